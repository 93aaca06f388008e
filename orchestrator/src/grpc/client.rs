//! A connection to a Parapet server, as the CLI and `parapet mcp` hold it.

use tonic::{
    metadata::{Ascii, MetadataValue},
    service::interceptor::InterceptedService,
    transport::Channel,
};

/// A connection to the server, with the bearer token on every call when there is one.
pub type Conn = InterceptedService<Channel, Bearer>;

/// Puts `authorization: Bearer …` on every call, when there is a token.
#[derive(Clone)]
pub struct Bearer(pub Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            req.metadata_mut().insert("authorization", token.clone());
        }
        Ok(req)
    }
}
