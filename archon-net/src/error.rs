//! archon-net's own error type: what can go wrong running the gRPC server. Calls
//! through [`crate::GrpcClient`] fail with archon-core's [`archon_core::Error`]
//! instead, like every other [`archon_core::api::Api`].

/// What can go wrong serving the gRPC API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listener's local address could not be read.
    #[error("cannot read the gRPC listener's address: {0}")]
    ListenerAddress(#[source] std::io::Error),
    /// The server stopped with an error.
    #[error("the gRPC server on {address} failed: {}", crate::status::chain(.source))]
    Serve {
        /// Where it listened.
        address: std::net::SocketAddr,
        /// Why it stopped.
        #[source]
        source: tonic::transport::Error,
    },
}

impl From<Error> for archon_core::Error {
    fn from(err: Error) -> Self {
        archon_core::Error::Transport(err.to_string())
    }
}
