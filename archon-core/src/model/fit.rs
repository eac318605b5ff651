//! Whether a job can run on a worker: the feasibility rules shared by the state
//! machine (which refuses over-commits and impossible jobs) and the schedulers
//! (which only propose placements that pass them).

use super::{JobSpec, Resources, Worker};

/// Why a job cannot run on a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Misfit {
    /// The worker has no executor for the task.
    Capability(String),
    /// A label constraint does not hold.
    Constraint(String),
    /// The request exceeds the worker's total capacity.
    Capacity,
    /// The request exceeds what is free right now.
    Busy,
}

impl std::fmt::Display for Misfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Misfit::Capability(c) => write!(f, "cannot run {c} tasks"),
            Misfit::Constraint(c) => write!(f, "does not satisfy constraint {c}"),
            Misfit::Capacity => f.write_str("is too small"),
            Misfit::Busy => f.write_str("has too little free right now"),
        }
    }
}

impl Worker {
    /// Whether `spec` could ever run here, ignoring what is allocated now.
    pub fn could_run(&self, spec: &JobSpec) -> Result<(), Misfit> {
        if !spec.task.runs_on(&self.capabilities) {
            return Err(Misfit::Capability(spec.task.capability()));
        }
        if let Some(c) = spec.constraints.iter().find(|c| !c.holds(&self.labels)) {
            return Err(Misfit::Constraint(describe_constraint(c)));
        }
        if !spec.resources.fits_in(&self.capacity) {
            return Err(Misfit::Capacity);
        }
        Ok(())
    }

    /// Whether `spec` fits here now, given `free` resources.
    pub fn fits_now(&self, spec: &JobSpec, free: &Resources) -> Result<(), Misfit> {
        self.could_run(spec)?;
        if !spec.resources.fits_in(free) {
            return Err(Misfit::Busy);
        }
        Ok(())
    }
}

fn describe_constraint(c: &super::Constraint) -> String {
    match c.op {
        super::ConstraintOp::Equals => format!("{}={}", c.label, c.value),
        super::ConstraintOp::NotEquals => format!("{}!={}", c.label, c.value),
        super::ConstraintOp::Exists => c.label.clone(),
    }
}
