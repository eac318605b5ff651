//! [`InProcTransport`]: a worker session to a manager in the same process, over
//! tokio channels. `archon dev` and embedders use it.

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{Hello, Session, Transport};
use crate::error::Error;
use crate::manager::Manager;

/// Connects workers to an in-process [`Manager`].
#[derive(Debug, Clone)]
pub struct InProcTransport {
    manager: Manager,
}

impl InProcTransport {
    /// A transport to `manager`.
    pub fn new(manager: Manager) -> InProcTransport {
        InProcTransport { manager }
    }
}

#[async_trait]
impl Transport for InProcTransport {
    async fn connect(&self, hello: Hello) -> Result<Session, Error> {
        let (outbound, rx) = mpsc::channel(4096);
        let (welcome, inbound) = self.manager.attach(hello, Box::pin(ReceiverStream::new(rx))).await?;
        Ok(Session { welcome, outbound, inbound })
    }
}
