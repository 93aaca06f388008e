//! Checks every gRPC call before its handler: who is calling (a bearer token or the client
//! certificate), then whether the service lets it call that method. The caller goes into
//! the request for the handler; refusals are journaled by the service.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use tonic::{
    Status,
    codegen::http,
    transport::server::{TcpConnectInfo, TlsConnectInfo},
};

use crate::{
    auth::Authenticator,
    service::{Caller, Operation, Service},
};

/// The operation a gRPC method is; `Ok(None)` for what anyone may call unauthenticated
/// (health, reflection), `Err` for a method Parapet does not know.
pub fn operation(path: &str) -> Result<Option<Operation>, Status> {
    if path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.v1.ServerReflection/")
        || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/")
    {
        return Ok(None);
    }
    match Operation::of_method(path) {
        Some(op) => Ok(Some(op)),
        None => Err(Status::unimplemented(format!(
            "{path} is not a Parapet method"
        ))),
    }
}

#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
    service: Service,
}

impl AuthLayer {
    pub fn new(auth: Arc<Authenticator>, service: Service) -> Self {
        Self { auth, service }
    }

    /// The caller if the call may go on, else the refusal to answer with.
    fn check(&self, req: &http::Request<tonic::body::Body>) -> Result<Caller, Status> {
        let path = req.uri().path();
        let e = req.extensions();
        let tls = e.get::<TlsConnectInfo<TcpConnectInfo>>();
        let peer = tls
            .and_then(|i| i.get_ref().remote_addr())
            .or_else(|| e.get::<TcpConnectInfo>().and_then(|i| i.remote_addr()));
        let Some(op) = operation(path)? else {
            return Ok(Caller {
                identity: None,
                peer,
            });
        };
        let certs = tls.and_then(|info| info.peer_certs());
        let leaf = certs.as_ref().and_then(|c| c.first()).map(|c| c.as_ref());
        let authorization = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        let caller = self
            .auth
            .identify(authorization, leaf, peer)
            .inspect_err(|e| self.service.refused("", peer, path, e))?;
        self.service.authorize(&caller, op)?;
        Ok(caller)
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            layer: self.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    layer: AuthLayer,
    inner: S,
}

impl<S> tower::Service<http::Request<tonic::body::Body>> for AuthService<S>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<tonic::body::Body>) -> Self::Future {
        match self.layer.check(&req) {
            Ok(caller) => {
                req.extensions_mut().insert(caller);
                // the clone is ready only after poll_ready; use the one that was polled
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(inner.call(req))
            }
            Err(status) => Box::pin(async move { Ok(status.into_http()) }),
        }
    }
}
