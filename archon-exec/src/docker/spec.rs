//! From a job to the container the engine is asked to create: a pure function of
//! the job, the attempt and the worker's [`DockerSettings`], so what reaches the
//! engine (limits, labels, mounts) is tested without one.

use std::collections::HashMap;

use archon_core::model::{AttemptId, DockerTask, JobId, JobSpec, RunId};
use bollard::models::{ContainerCreateBody, HostConfig};

use super::DockerSettings;
use crate::error::ExecError;

/// The label every container Archon creates carries (value `true`).
pub const LABEL_MANAGED: &str = "archon.managed";
/// The label naming the worker instance that owns a container (its state dir);
/// a worker restarted after a crash removes the containers labelled with its own.
pub const LABEL_OWNER: &str = "archon.owner";
/// The label with the worker's name.
pub const LABEL_WORKER: &str = "archon.worker";
/// The label with the job id (`job-N`).
pub const LABEL_JOB: &str = "archon.job";
/// The label with the run id (`run-N`).
pub const LABEL_RUN: &str = "archon.run";
/// The label with the attempt id (`att-N`).
pub const LABEL_ATTEMPT: &str = "archon.attempt";

/// The ids of the attempt a container runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttemptIds {
    pub(crate) job: JobId,
    pub(crate) run: RunId,
    pub(crate) attempt: AttemptId,
}

/// The body of the create request for one attempt of `spec`.
pub(crate) fn container_body(
    task: &DockerTask,
    spec: &JobSpec,
    ids: AttemptIds,
    settings: &DockerSettings,
) -> Result<ContainerCreateBody, ExecError> {
    if !task.mounts.is_empty() && !settings.allow_mounts {
        return Err(ExecError::MountsDisabled { mounts: task.mounts.join(", ") });
    }
    let labels = HashMap::from([
        (LABEL_MANAGED.to_owned(), "true".to_owned()),
        (LABEL_OWNER.to_owned(), settings.owner.clone()),
        (LABEL_WORKER.to_owned(), settings.worker.clone()),
        (LABEL_JOB.to_owned(), ids.job.to_string()),
        (LABEL_RUN.to_owned(), ids.run.to_string()),
        (LABEL_ATTEMPT.to_owned(), ids.attempt.to_string()),
    ]);
    let resources = &spec.resources;
    let memory = (resources.memory_bytes > 0).then(|| i64::try_from(resources.memory_bytes).unwrap_or(i64::MAX));
    let host_config = HostConfig {
        nano_cpus: (resources.cpu_millis > 0)
            .then(|| i64::try_from(resources.cpu_millis).unwrap_or(i64::MAX / 1_000_000).saturating_mul(1_000_000)),
        memory,
        // The same as `memory`: no swap on top, so the limit is the limit.
        memory_swap: memory,
        pids_limit: settings.pids_limit.filter(|&n| n > 0),
        network_mode: Some(task.network.clone()),
        binds: (!task.mounts.is_empty()).then(|| task.mounts.clone()),
        // docker-init as PID 1: signals reach the job, zombies are reaped.
        init: Some(settings.init),
        ..HostConfig::default()
    };
    Ok(ContainerCreateBody {
        image: Some(task.image.clone()),
        cmd: (!task.command.is_empty()).then(|| task.command.clone()),
        entrypoint: task.entrypoint.clone(),
        // `env` and `secret_env` alike (the engine keeps them in the container's config).
        env: (!spec.env.is_empty() || !spec.secret_env.is_empty())
            .then(|| spec.environment().map(|(k, v)| format!("{k}={v}")).collect()),
        working_dir: spec.working_dir.clone(),
        user: task.user.clone(),
        labels: Some(labels),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        attach_stdin: Some(false),
        open_stdin: Some(false),
        tty: Some(false),
        host_config: Some(host_config),
        ..ContainerCreateBody::default()
    })
}

/// `image` with `:latest` added when it names no tag or digest: the engine's
/// create-image call pulls every tag of a bare repository name.
pub(crate) fn with_tag(image: &str) -> String {
    let name = image.rsplit('/').next().unwrap_or(image);
    if name.contains(':') || name.contains('@') { image.to_owned() } else { format!("{image}:latest") }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use archon_core::model::{PullPolicy, Resources, Task};

    use super::*;

    fn task() -> DockerTask {
        DockerTask {
            image: "archon-test/busybox:1".into(),
            command: vec!["sh".into(), "-c".into(), "echo hi".into()],
            entrypoint: None,
            network: "none".into(),
            user: Some("65534".into()),
            mounts: vec![],
            pull: PullPolicy::IfNotPresent,
        }
    }

    fn ids() -> AttemptIds {
        AttemptIds { job: JobId(1), run: RunId(2), attempt: AttemptId(3) }
    }

    fn settings() -> DockerSettings {
        DockerSettings { worker: "w1".into(), owner: "/var/lib/archon".into(), ..DockerSettings::default() }
    }

    #[test]
    fn limits_labels_and_the_command_reach_the_create_request() {
        let mut spec = JobSpec::new("j", Task::Docker(Box::new(task())));
        spec.resources = Resources { cpu_millis: 500, memory_bytes: 128 << 20, ..Resources::default() };
        spec.env.insert("GREETING".into(), "hello".into());
        spec.secret_env.insert("TOKEN".into(), "s3cr3t".into());
        spec.working_dir = Some("/tmp".into());
        let body = container_body(&task(), &spec, ids(), &settings()).unwrap();
        let host = body.host_config.unwrap();
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(host.memory, Some(128 << 20));
        assert_eq!(host.memory_swap, Some(128 << 20));
        assert_eq!(host.pids_limit, Some(4096));
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(host.init, Some(true));
        assert_eq!(host.binds, None);
        assert_eq!(body.cmd.unwrap(), ["sh", "-c", "echo hi"]);
        assert_eq!(body.env.unwrap(), ["GREETING=hello", "TOKEN=s3cr3t"]);
        assert_eq!(body.working_dir.as_deref(), Some("/tmp"));
        assert_eq!(body.user.as_deref(), Some("65534"));
        let labels = body.labels.unwrap();
        assert_eq!(labels[LABEL_MANAGED], "true");
        assert_eq!(labels[LABEL_OWNER], "/var/lib/archon");
        assert_eq!(labels[LABEL_WORKER], "w1");
        assert_eq!(labels[LABEL_JOB], "job-1");
        assert_eq!(labels[LABEL_RUN], "run-2");
        assert_eq!(labels[LABEL_ATTEMPT], "att-3");
    }

    #[test]
    fn zero_requests_set_no_limit() {
        let mut spec = JobSpec::new("j", Task::Docker(Box::new(task())));
        spec.resources = Resources::default();
        let s = DockerSettings { pids_limit: None, ..settings() };
        let host = container_body(&task(), &spec, ids(), &s).unwrap().host_config.unwrap();
        assert_eq!((host.nano_cpus, host.memory, host.memory_swap, host.pids_limit), (None, None, None, None));
    }

    #[test]
    fn bind_mounts_need_the_worker_to_allow_them() {
        let mut t = task();
        t.mounts = vec!["/srv/data:/data:ro".into()];
        let spec = JobSpec::new("j", Task::Docker(Box::new(t.clone())));
        let refused = container_body(&t, &spec, ids(), &settings()).unwrap_err().to_string();
        assert!(refused.contains("/srv/data:/data:ro") && refused.contains("--docker-allow-mounts"), "{refused}");
        let allowed = DockerSettings { allow_mounts: true, ..settings() };
        let host = container_body(&t, &spec, ids(), &allowed).unwrap().host_config.unwrap();
        assert_eq!(host.binds.unwrap(), ["/srv/data:/data:ro"]);
    }

    #[test]
    fn a_bare_image_name_gets_the_latest_tag() {
        assert_eq!(with_tag("busybox"), "busybox:latest");
        assert_eq!(with_tag("archon-test/busybox:1"), "archon-test/busybox:1");
        assert_eq!(with_tag("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(with_tag("localhost:5000/app:2"), "localhost:5000/app:2");
        assert_eq!(with_tag("app@sha256:abc"), "app@sha256:abc");
    }
}
