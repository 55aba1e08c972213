//! The Workflow Manager's domain: CTI state, update application and view-state computation.
//!
//! Plain synchronous Rust: no async runtime, no I/O, no wire formats. Services wrap it.
//!
//! # Layout
//! - [`id`]: validated identifiers, safe as dot-notation target segments.
//! - [`model`]: the CTI state of a session (channels, agent states, interactions).
//! - [`update`]: CTI updates, validated completely before they are applied.
//! - [`limits`]: the largest session accepted.
//! - [`capability`]: the capability catalogue and the [`CapSet`] bitset.
//! - [`profile`]: options, feature switches and custom rules.
//! - [`custom`]: the hook through which compiled custom rules narrow enablement.
//! - [`explain`]: why each capability is enabled or disabled.
//! - `rules`: the built-in state rules of each capability.
//! - [`command`]: the check a MediaBar command passes before it reaches the platform.
//! - [`view`]: view states, their diff, and `state.updated` events.
//! - [`session`]: sequencing, and the view state last emitted.
//! - [`error`]: why an update is refused.
//! - `testkit` (feature `testkit`): test fixtures shared by tests and benchmarks.

pub mod capability;
pub mod command;
pub mod custom;
pub mod error;
pub mod explain;
pub mod id;
pub mod limits;
pub mod model;
pub mod profile;
mod rules;
pub mod session;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod update;
pub mod view;

pub use capability::{CapSet, Capability, TargetKind};
pub use command::CommandRefusal;
pub use custom::{Circumstances, Condition, CustomRule, Facts};
pub use error::UpdateError;
pub use explain::{CapabilityVerdict, TargetExplanation, Verdict, explain};
pub use id::Id;
pub use model::{
    AgentState, Channel, ConsultIntent, Direction, Interaction, InteractionState, Media,
    Participant, ParticipantRole, Pending, Recording, SessionState, Supervision,
};
pub use profile::{Options, Profile, ReasonCodes, Switch};
pub use session::{Applied, Persisted, Session};
pub use update::{ChannelUpdate, CtiUpdate, InteractionChange};
pub use view::{StateEvent, Target, TargetContext, TargetView, ViewState};
