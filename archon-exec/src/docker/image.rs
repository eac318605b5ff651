//! Making sure a job's image is on the engine, per its pull policy: use the local
//! image when present (`if-not-present`, the default), always pull (`always`), or
//! never pull (`never`). A failed pull says whether a local copy existed, so an
//! air-gapped worker's error points at `docker load`.

use archon_core::model::{DockerTask, PullPolicy};
use bollard::errors::Error as DockerError;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures::TryStreamExt;

use super::{DockerExecutor, engine_message, spec::with_tag};
use crate::error::ExecError;

impl DockerExecutor {
    /// Gets `task.image` onto the engine if the policy calls for it.
    pub(super) async fn ensure_image(&self, task: &DockerTask) -> Result<(), ExecError> {
        let image = task.image.as_str();
        let local = match self.docker.inspect_image(image).await {
            Ok(_) => true,
            Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => false,
            Err(e) => return Err(self.lost(e)),
        };
        match (task.pull, local) {
            (PullPolicy::IfNotPresent | PullPolicy::Never, true) => Ok(()),
            (PullPolicy::Never, false) => Err(ExecError::ImageMissing { image: image.to_owned() }),
            (PullPolicy::IfNotPresent, false) => self.pull(image).await.map_err(|message| ExecError::PullFailed {
                image: image.to_owned(),
                local: false,
                message,
            }),
            (PullPolicy::Always, local) => self.pull(image).await.map_err(|message| ExecError::PullFailed {
                image: image.to_owned(),
                local,
                message,
            }),
        }
    }

    /// Pulls `image`, returning the engine's complaint when it cannot.
    async fn pull(&self, image: &str) -> Result<(), String> {
        tracing::info!(image, "pulling the image");
        let options = CreateImageOptionsBuilder::new().from_image(&with_tag(image)).build();
        let progress = self.docker.create_image(Some(options), None, None);
        progress.try_for_each(|_| async { Ok(()) }).await.map_err(engine_message)
    }
}
