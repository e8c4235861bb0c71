//! [`SandboxGuard`]: a sandbox that stops when dropped.
use crate::cluster::Sandbox;

/// Stops a sandbox's servers when dropped: for tests.
///
/// Derefs to the [`Sandbox`]. Errors while stopping are logged, not raised.
#[derive(Debug)]
pub struct SandboxGuard(pub Sandbox);

impl std::ops::Deref for SandboxGuard {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.0
    }
}

impl Drop for SandboxGuard {
    fn drop(&mut self) {
        if let Err(e) = self.0.down() {
            tracing::warn!(dir = %self.0.dir().display(), "sandbox down failed: {e}");
        }
    }
}
