//! What a manager accepts: bounds on every input that ends up in the log or in
//! memory, each with a default and a config key of the same name. A submit or a
//! worker's hello past one is refused naming the limit and the value, before
//! anything is proposed, so nothing is stored.

use crate::error::Error;
use crate::model::units::format_bytes;
use crate::model::{JobSpec, SpecError};
use crate::transport::Hello;

/// Bounds on inputs (see the module docs). The defaults suit a busy cluster; the
/// Raft log's entry cap (1 MiB, `max_entry_bytes`) bounds the rest: a spec
/// at the task and env limits together still fits one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Job specs in one submit request.
    pub max_submit_specs: usize,
    /// Bytes of a task: command, script body, argv, function input, container fields.
    pub max_task_bytes: usize,
    /// Bytes of a job's environment (names and values of `env` and `secret_env`).
    pub max_env_bytes: usize,
    /// Entries of a job's `depends_on`.
    pub max_depends_on: usize,
    /// Jobs in one workflow.
    pub max_workflow_nodes: usize,
    /// A job's placement constraints.
    pub max_constraints: usize,
    /// Labels a worker may announce.
    pub max_worker_labels: usize,
    /// Bytes of a worker's labels (names and values).
    pub max_label_bytes: usize,
    /// Running attempts a worker may announce when it connects.
    pub max_announced_attempts: usize,
    /// Attempts a worker may hold queued beyond what fits it (its `queue`).
    pub max_worker_queue: u32,
    /// Bytes of one chunk of live output from a worker (larger ones are dropped).
    pub max_output_chunk: usize,
    /// Output kept per stream of an attempt when its job does not say.
    pub output_limit: u64,
    /// The most output per stream a job may ask to keep (`output_limit` in its spec).
    pub max_output_limit: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_submit_specs: 10_000,
            max_task_bytes: 512 << 10,
            max_env_bytes: 128 << 10,
            max_depends_on: 1_000,
            max_workflow_nodes: 5_000,
            max_constraints: 64,
            max_worker_labels: 256,
            max_label_bytes: 64 << 10,
            max_announced_attempts: 65_536,
            max_worker_queue: 1_024,
            max_output_chunk: 1 << 20,
            output_limit: 1 << 20,
            max_output_limit: 16 << 20,
        }
    }
}

impl Limits {
    /// Refuses a request with more specs than `max_submit_specs`.
    pub fn check_submit(&self, specs: usize) -> Result<(), Error> {
        if specs > self.max_submit_specs {
            return Err(Error::invalid(
                "specs",
                format!(
                    "{specs} job specs in one submit is more than max_submit_specs ({}); send them in smaller batches",
                    self.max_submit_specs
                ),
            ));
        }
        Ok(())
    }

    /// Refuses a spec past a limit, naming the field, the limit and the value.
    pub fn check_spec(&self, spec: &JobSpec) -> Result<(), SpecError> {
        let task = spec.task.size();
        if task > self.max_task_bytes {
            return Err(SpecError::new(
                "task",
                format!(
                    "{} is more than max_task_bytes ({}); keep large data out of the job (a file, an image)",
                    format_bytes(task as u64),
                    format_bytes(self.max_task_bytes as u64)
                ),
            ));
        }
        // Secret variables count with the others: they reach the same process.
        let env: usize = spec.environment().map(|(k, v)| k.len() + v.len()).sum();
        if env > self.max_env_bytes {
            let (field, which) =
                if spec.secret_env.is_empty() { ("env", "") } else { ("secret_env", " (env and secret_env)") };
            return Err(SpecError::new(
                field,
                format!(
                    "{} of variables{which} is more than max_env_bytes ({})",
                    format_bytes(env as u64),
                    format_bytes(self.max_env_bytes as u64)
                ),
            ));
        }
        if spec.depends_on.len() > self.max_depends_on {
            return Err(SpecError::new(
                "depends_on",
                format!("{} jobs is more than max_depends_on ({})", spec.depends_on.len(), self.max_depends_on),
            ));
        }
        if spec.constraints.len() > self.max_constraints {
            return Err(SpecError::new(
                "constraints",
                format!(
                    "{} constraints is more than max_constraints ({})",
                    spec.constraints.len(),
                    self.max_constraints
                ),
            ));
        }
        if let Some(limit) = spec.output_limit
            && limit > self.max_output_limit
        {
            return Err(SpecError::new(
                "output_limit",
                format!(
                    "{} per stream is more than this manager's max_output_limit ({})",
                    format_bytes(limit),
                    format_bytes(self.max_output_limit)
                ),
            ));
        }
        Ok(())
    }

    /// Refuses a worker announcing more than the limits allow.
    pub fn check_hello(&self, hello: &Hello) -> Result<(), Error> {
        if hello.labels.len() > self.max_worker_labels {
            return Err(Error::invalid(
                "labels",
                format!("{} labels is more than max_worker_labels ({})", hello.labels.len(), self.max_worker_labels),
            ));
        }
        let bytes: usize = hello.labels.iter().map(|(k, v)| k.len() + v.len()).sum();
        if bytes > self.max_label_bytes {
            return Err(Error::invalid(
                "labels",
                format!(
                    "{} of labels is more than max_label_bytes ({})",
                    format_bytes(bytes as u64),
                    format_bytes(self.max_label_bytes as u64)
                ),
            ));
        }
        if hello.queue > self.max_worker_queue {
            return Err(Error::invalid(
                "queue",
                format!(
                    "a queue of {} attempts is more than max_worker_queue ({}); ask for fewer",
                    hello.queue, self.max_worker_queue
                ),
            ));
        }
        if hello.running.len() > self.max_announced_attempts {
            return Err(Error::invalid(
                "running",
                format!(
                    "{} running attempts announced is more than max_announced_attempts ({})",
                    hello.running.len(),
                    self.max_announced_attempts
                ),
            ));
        }
        Ok(())
    }

    /// The output kept per stream for a job.
    pub fn output_limit_for(&self, spec: &JobSpec) -> u64 {
        spec.output_limit.unwrap_or(self.output_limit).min(self.max_output_limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{JobId, Task};

    #[test]
    fn each_limit_refuses_naming_the_field_and_the_limit() {
        let limits = Limits {
            max_task_bytes: 10,
            max_env_bytes: 10,
            max_depends_on: 1,
            max_constraints: 1,
            max_output_limit: 100,
            ..Limits::default()
        };
        let spec = |edit: &dyn Fn(&mut JobSpec)| {
            let mut s = JobSpec::new("x", Task::Shell { command: "true".into() });
            edit(&mut s);
            limits.check_spec(&s).map_err(|e| e.to_string())
        };
        assert_eq!(spec(&|_| {}), Ok(()));
        let e = spec(&|s| s.task = Task::Shell { command: "echo 0123456789".into() }).unwrap_err();
        assert!(e.starts_with("task: 15B is more than max_task_bytes (10B)"), "{e}");
        let e = spec(&|s| {
            s.env.insert("LONG".into(), "0123456789".into());
        })
        .unwrap_err();
        assert!(e.starts_with("env: 14B of variables is more than max_env_bytes (10B)"), "{e}");
        // Secret variables count with the others, and the error shows no value.
        let e = spec(&|s| {
            s.env.insert("A".into(), "1".into());
            s.secret_env.insert("TOKEN".into(), "s3cr3t".into());
        })
        .unwrap_err();
        assert!(e.starts_with("secret_env: 13B of variables (env and secret_env) is more than max_env_bytes"), "{e}");
        assert!(!e.contains("s3cr3t"), "{e}");
        let e = spec(&|s| s.depends_on = vec![JobId(1), JobId(2)]).unwrap_err();
        assert_eq!(e, "depends_on: 2 jobs is more than max_depends_on (1)");
        let e = spec(&|s| s.constraints = vec!["a=1".parse().unwrap(), "b".parse().unwrap()]).unwrap_err();
        assert_eq!(e, "constraints: 2 constraints is more than max_constraints (1)");
        let e = spec(&|s| s.output_limit = Some(1000)).unwrap_err();
        assert!(e.starts_with("output_limit: 1000B per stream is more than"), "{e}");
        let e = limits.check_submit(limits.max_submit_specs + 1).unwrap_err().to_string();
        assert!(e.starts_with("specs: 10001 job specs in one submit is more than max_submit_specs (10000)"), "{e}");
    }
}
