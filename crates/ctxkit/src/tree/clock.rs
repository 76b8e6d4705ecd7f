//! Which timer queue a context's deadlines go to: the real-time queue, or a manual clock's,
//! carried as an ordinary value from `with_clock` down ([S25](crate::guarantees#s25)).

use std::sync::{Arc, OnceLock};

use super::layer::{self, Label};
use super::node::Node;
use super::Pair;
use crate::key::{Key, KeyId};
use crate::time::Nanos;
use crate::timer::TimerQueue;

/// The timer queue of the tree: it expires nodes.
pub(crate) type Queue = TimerQueue<Node>;

/// The key under which `with_clock` stores its clock's queue, as an ordinary value.
static CLOCK: Key<Arc<Queue>> = Key::new("clock");

/// The key a merge takes from its first parent alone ([S24](crate::guarantees#s24)).
pub(crate) fn clock_key() -> KeyId {
    KeyId::of_key(&CLOCK)
}

/// The process-wide real-time queue.
fn real_time() -> &'static Arc<Queue> {
    static REAL: OnceLock<Arc<Queue>> = OnceLock::new();
    REAL.get_or_init(|| Arc::new(Queue::real_time()))
}

impl Pair {
    /// The timer queue of this context's clock: its manual clock's, else the real-time one.
    pub(crate) fn timer_queue(&self) -> &Arc<Queue> {
        match self.find(clock_key()).and_then(|q| q.downcast_ref()) {
            Some(queue) => queue,
            None => real_time(),
        }
    }

    /// Whether this context's deadlines are measured on the real clock.
    pub(crate) fn is_real_time(&self) -> bool {
        self.timer_queue().is_real_time()
    }

    /// The current time on this context's clock.
    pub(crate) fn now(&self) -> Nanos {
        self.timer_queue().now()
    }

    /// A child whose deadlines go to `queue` (a manual clock's).
    pub(crate) fn with_timer_queue(&self, queue: Arc<Queue>) -> Pair {
        let layer = layer::with_value(self, clock_key(), Label::Clock, queue);
        Pair {
            node: self.node.clone(),
            layer: Some(layer),
        }
    }
}
