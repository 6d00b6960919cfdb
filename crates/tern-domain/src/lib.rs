//! Pure domain logic of Tern's messaging: the message lifecycle state machine, validation of
//! a send request, opt-out keywords, sender selection and per-sender pacing. Nothing here
//! does IO or knows the time except through its arguments, so every rule is a unit test.

pub mod credentials;
pub mod gcra;
pub mod keywords;
pub mod lifecycle;
pub mod network;
pub mod pacing;
pub mod routing;
pub mod send;

pub use lifecycle::{LifecycleError, check_transition};
pub use routing::{Route, RouteError, RouteTable};
pub use send::{SendError, SendParams, SendPlan, plan_send};
