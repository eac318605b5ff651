//! Getting a job's image onto the engine, per its pull policy: use the local image
//! when present and pull it otherwise (`if-not-present`, the default), pull before
//! every run (`always`), or never pull (`never`). A failed pull of a missing image
//! points an air-gapped worker's operator at `docker load`.

use archon_core::model::{DockerTask, PullPolicy};
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures::TryStreamExt;

use super::{DockerExecutor, engine_message, spec::with_tag};
use crate::error::ExecError;

impl DockerExecutor {
    /// Pulls `task.image`: before every run under `always`, or when creating the
    /// container found no image. `never` forbids the latter.
    pub(super) async fn pull(&self, task: &DockerTask, always: bool) -> Result<(), ExecError> {
        let image = task.image.as_str();
        if task.pull == PullPolicy::Never {
            return Err(ExecError::ImageMissing { image: image.to_owned() });
        }
        tracing::info!(image, "pulling the image");
        let options = CreateImageOptionsBuilder::new().from_image(&with_tag(image)).build();
        let progress = self.docker.create_image(Some(options), None, None);
        progress.try_for_each(|_| async { Ok(()) }).await.map_err(|e| ExecError::PullFailed {
            image: image.to_owned(),
            always,
            message: engine_message(e),
        })
    }
}
