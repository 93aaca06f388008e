//! `parapet mcp`: an MCP server on stdin/stdout for an agent runtime to launch, calling a
//! Parapet server over gRPC with the CLI's credentials.

use parapet_orchestrator::mcp::{Backend, Parapet};
use parapet_proto::v1::{self as pb, admin_client::AdminClient};
use rmcp::ServiceExt as _;

use super::Conn;

pub async fn run(conn: Conn) -> anyhow::Result<()> {
    // Credentials that do not authenticate fail here, before serving: the agent's runtime then
    // reports a server that would not start, not tools that all fail. Anyone may read the
    // status, so an accepted call proves only who the caller is.
    AdminClient::new(conn.clone())
        .get_status(pb::GetStatusRequest {})
        .await?;
    let server = Parapet::new(Backend::Remote(conn))
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| anyhow::anyhow!("MCP on stdio: {e}"))?;
    server
        .waiting()
        .await
        .map_err(|e| anyhow::anyhow!("MCP on stdio: {e}"))?;
    Ok(())
}
