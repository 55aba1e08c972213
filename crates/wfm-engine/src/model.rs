//! The CTI state of a session: channels with their agent state, and interactions on them.
//!
//! The engine records facts reported by the Interaction Processor; the CTI platform is the
//! source of truth, so nothing here models which transitions are allowed.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::id::Id;

/// The media of a channel. An interaction has the media of its channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Media {
    /// Telephony.
    Voice,
    /// Web chat and messaging.
    Chat,
    /// Email.
    Email,
    /// Back-office work item.
    Task,
    /// Scheduled callback.
    Callback,
}

impl Media {
    /// Every media, in a stable order.
    pub const ALL: [Media; 5] = [
        Media::Voice,
        Media::Chat,
        Media::Email,
        Media::Task,
        Media::Callback,
    ];

    /// The media with wire name `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        by_name(&Self::ALL, Self::as_str, name)
    }

    /// True for voice, whose interactions have the telephony capabilities.
    pub fn is_voice(self) -> bool {
        self == Media::Voice
    }

    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Media::Voice => "voice",
            Media::Chat => "chat",
            Media::Email => "email",
            Media::Task => "task",
            Media::Callback => "callback",
        }
    }
}

/// The agent state of one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentState {
    /// Not logged in on this channel.
    LoggedOut,
    /// Logged in, not accepting work (the channel's `reason` says why).
    NotReady,
    /// Waiting for work.
    Ready,
    /// Work is being offered or routed to the agent.
    Reserved,
    /// Handling work.
    Busy,
    /// Wrap-up after an interaction.
    AfterCallWork,
}

impl AgentState {
    /// Every agent state.
    pub const ALL: [AgentState; 6] = [
        AgentState::LoggedOut,
        AgentState::NotReady,
        AgentState::Ready,
        AgentState::Reserved,
        AgentState::Busy,
        AgentState::AfterCallWork,
    ];

    /// The agent state with wire name `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        by_name(&Self::ALL, Self::as_str, name)
    }

    /// The snake_case wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::LoggedOut => "logged_out",
            AgentState::NotReady => "not_ready",
            AgentState::Ready => "ready",
            AgentState::Reserved => "reserved",
            AgentState::Busy => "busy",
            AgentState::AfterCallWork => "after_call_work",
        }
    }

    /// True for every state but `logged_out`.
    pub fn is_logged_in(self) -> bool {
        self != AgentState::LoggedOut
    }
}

/// A Ready or NotReady requested during a call, which the platform applies after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pending {
    /// Become ready when the current work ends.
    Ready,
    /// Become not ready (with the channel's `pending_reason`) when the current work ends.
    NotReady,
}

impl Pending {
    /// The pending state with wire name `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        by_name(&[Pending::Ready, Pending::NotReady], Self::as_str, name)
    }

    /// The snake_case wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Pending::Ready => "ready",
            Pending::NotReady => "not_ready",
        }
    }
}

/// The direction of an interaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From a customer to the agent.
    Inbound,
    /// From the agent to a customer.
    Outbound,
    /// Between agents or extensions.
    Internal,
    /// A consultation leg placed by the agent.
    Consult,
}

impl Direction {
    /// The direction with wire name `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        use Direction::*;
        by_name(&[Inbound, Outbound, Internal, Consult], Self::as_str, name)
    }

    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
            Direction::Internal => "internal",
            Direction::Consult => "consult",
        }
    }
}

/// What a consultation call is placed for, as CSTA `consultOptions` and the Genesys
/// initiate-transfer and initiate-conference requests say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ConsultIntent {
    /// Either a transfer or a conference may follow.
    #[default]
    Unspecified,
    /// Only a transfer may complete it.
    Transfer,
    /// Only a conference may complete it.
    Conference,
}

impl ConsultIntent {
    /// The consult intent with wire name `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        use ConsultIntent::*;
        by_name(&[Unspecified, Transfer, Conference], Self::as_str, name)
    }

    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsultIntent::Unspecified => "unspecified",
            ConsultIntent::Transfer => "transfer",
            ConsultIntent::Conference => "conference",
        }
    }

    /// Whether a consultation with this intent may complete as a transfer.
    pub fn allows_transfer(self) -> bool {
        self != ConsultIntent::Conference
    }

    /// Whether a consultation with this intent may complete as a conference.
    pub fn allows_conference(self) -> bool {
        self != ConsultIntent::Transfer
    }
}

/// How this session takes part in an interaction: its own work, or, for a supervisor, a
/// supervised agent's call and how the supervisor has joined it (Genesys listen-in,
/// coaching and barge-in; Finesse SILENT_MONITOR and BARGE_CALL; Amazon Connect
/// `silent_monitor` and `barge`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Supervision {
    /// The session's own interaction.
    #[default]
    Own,
    /// A supervised agent's interaction the supervisor has not joined.
    Supervised,
    /// The supervisor listens in; nobody hears the supervisor.
    Monitoring,
    /// The supervisor coaches: only the agent hears the supervisor.
    Whispering,
    /// The supervisor has barged in: everyone hears the supervisor.
    Barged,
}

impl Supervision {
    /// The supervision with wire name `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        use Supervision::*;
        by_name(
            &[Own, Supervised, Monitoring, Whispering, Barged],
            Self::as_str,
            name,
        )
    }

    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Supervision::Own => "own",
            Supervision::Supervised => "supervised",
            Supervision::Monitoring => "monitoring",
            Supervision::Whispering => "whispering",
            Supervision::Barged => "barged",
        }
    }

    /// The supervisor is on the call, in any mode.
    pub fn is_joined(self) -> bool {
        matches!(
            self,
            Supervision::Monitoring | Supervision::Whispering | Supervision::Barged
        )
    }
}

/// What a participant is to the interaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParticipantRole {
    /// An agent (this one or another).
    Agent,
    /// The customer.
    Customer,
    /// A party reached by a consultation.
    Consult,
    /// A supervisor monitoring, coaching or barging in.
    Supervisor,
}

impl ParticipantRole {
    /// The participant role with wire name `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        use ParticipantRole::*;
        by_name(&[Agent, Customer, Consult, Supervisor], Self::as_str, name)
    }

    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ParticipantRole::Agent => "agent",
            ParticipantRole::Customer => "customer",
            ParticipantRole::Consult => "consult",
            ParticipantRole::Supervisor => "supervisor",
        }
    }
}

/// One party on an interaction, as the Interaction Processor reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    /// The platform's id of the party, for the drop command; free text.
    pub id: String,
    /// What the party is to the interaction.
    pub role: ParticipantRole,
    /// The party is the agent of this session.
    pub is_self: bool,
    /// The party controls the conference (Finesse's conference controller).
    pub controller: bool,
}

/// The state of an interaction. Voice and non-voice media have their own states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InteractionState {
    /// Voice: ringing at the agent.
    Alerting,
    /// Voice: the agent's outbound or consult call is ringing at the far end.
    Dialing,
    /// Voice: talking.
    Connected,
    /// Voice: on hold.
    Held,
    /// Voice: the call attempt failed (busy, no answer) but the leg still exists.
    Failed,
    /// Non-voice: offered to the agent.
    Offered,
    /// Non-voice: being worked on.
    Active,
    /// Non-voice: parked by the agent.
    Paused,
    /// Any media: finished, awaiting disposition and completion.
    WrapUp,
    /// Any media: gone. An ended interaction gets one final all-disabled event and is dropped.
    Ended,
}

impl InteractionState {
    /// Every interaction state.
    pub const ALL: [InteractionState; 10] = [
        InteractionState::Alerting,
        InteractionState::Dialing,
        InteractionState::Connected,
        InteractionState::Held,
        InteractionState::Failed,
        InteractionState::Offered,
        InteractionState::Active,
        InteractionState::Paused,
        InteractionState::WrapUp,
        InteractionState::Ended,
    ];

    /// The interaction state with wire name `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        by_name(&Self::ALL, Self::as_str, name)
    }

    /// The snake_case wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            InteractionState::Alerting => "alerting",
            InteractionState::Dialing => "dialing",
            InteractionState::Connected => "connected",
            InteractionState::Held => "held",
            InteractionState::Failed => "failed",
            InteractionState::Offered => "offered",
            InteractionState::Active => "active",
            InteractionState::Paused => "paused",
            InteractionState::WrapUp => "wrap_up",
            InteractionState::Ended => "ended",
        }
    }

    /// Whether the state exists for `media`.
    pub fn applies_to(self, media: Media) -> bool {
        use InteractionState::*;
        match self {
            Alerting | Dialing | Connected | Held | Failed => media.is_voice(),
            Offered | Active | Paused => !media.is_voice(),
            WrapUp | Ended => true,
        }
    }

    /// Pending or live work: everything but wrap-up (and ended). It keeps the agent from
    /// logging out and from dialing. A failed call counts until the switch clears it, and a
    /// paused task counts as an active one does.
    pub fn is_live(self) -> bool {
        !matches!(self, InteractionState::WrapUp | InteractionState::Ended)
    }

    /// Work offered to the agent and not yet taken: an alerting call or an offered item.
    pub fn is_offer(self) -> bool {
        matches!(self, InteractionState::Alerting | InteractionState::Offered)
    }

    /// A call the agent is on, so that call flags (recording, mute) can still be changed.
    pub fn is_on_call(self) -> bool {
        use InteractionState::*;
        matches!(self, Dialing | Connected | Held)
    }

    /// A voice call leg that still exists on the switch (wrap-up is no longer a call).
    pub fn is_call_leg(self) -> bool {
        use InteractionState::*;
        matches!(self, Alerting | Dialing | Connected | Held | Failed)
    }
}

impl fmt::Display for InteractionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Media {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Call recording state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Recording {
    /// Not recording.
    #[default]
    Off,
    /// Recording.
    Active,
    /// Recording paused (e.g. while card details are read out).
    Paused,
}

impl Recording {
    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Recording::Off => "off",
            Recording::Active => "active",
            Recording::Paused => "paused",
        }
    }

    /// The recording state with wire name `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        by_name(
            &[Recording::Off, Recording::Active, Recording::Paused],
            Self::as_str,
            name,
        )
    }
}

/// The variant of `all` whose wire name is `name`.
fn by_name<T: Copy>(all: &[T], name_of: fn(T) -> &'static str, name: &str) -> Option<T> {
    all.iter().copied().find(|v| name_of(*v) == name)
}

/// One media channel of the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// Unique in the session.
    pub id: Id,
    /// Fixed for the channel's life.
    pub media: Media,
    /// Current agent state.
    pub state: AgentState,
    /// Not-ready reason code; empty when none.
    pub reason: String,
    /// State requested during work, applied by the platform afterwards.
    pub pending: Option<Pending>,
    /// Reason code of a pending NotReady; empty when none.
    pub pending_reason: String,
    /// Extensions of the current after-call work the platform has granted.
    pub wrap_up_extensions: u32,
    /// Interactions the platform routes to the channel at once (three chats, say); 0 when
    /// the Interaction Processor does not say, which leaves only the profile's cap.
    pub capacity: u32,
}

/// A call, chat, email, task or callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    /// Unique in the session.
    pub id: Id,
    /// The channel it is on; its media is the channel's.
    pub channel: Id,
    /// Inbound, outbound, internal or consult.
    pub direction: Direction,
    /// Current state; never `Ended` while tracked.
    pub state: InteractionState,
    /// For a consult leg: the interaction it consults for.
    pub consult_of: Option<Id>,
    /// For a consult leg: whether it was placed for a transfer, a conference or either.
    pub consult_intent: ConsultIntent,
    /// An outbound campaign's preview reservation: the agent sees the customer before the
    /// call is placed (Finesse RESERVED_OUTBOUND_PREVIEW).
    pub preview: bool,
    /// For a call placed for a scheduled callback: the callback it serves. A relation to an
    /// interaction no longer tracked reads as none.
    pub callback_of: Option<Id>,
    /// Parties on the call including the agent; 2 for an ordinary call.
    pub parties: u32,
    /// The parties one by one, when the Interaction Processor reports them; empty when it
    /// reports only the count.
    pub participants: Vec<Participant>,
    /// Recording state.
    pub recording: Recording,
    /// Whether this is the session's own work or a supervised agent's.
    pub supervision: Supervision,
    /// A supervisor is monitoring this (own) interaction, as the platform reports it.
    pub monitored: bool,
    /// Whether the agent's microphone is muted.
    pub muted: bool,
    /// Disposition code set by the agent; empty when none.
    pub disposition: String,
    /// The other party as the agent sees it: a number, a name, a chat contact.
    pub caller: Arc<str>,
    /// The queue the platform routed the interaction through.
    pub queue: Arc<str>,
    /// Attached data. Shared with the events that show it, so that an event costs a
    /// reference count, not a copy; an update copies it only while an event still holds it.
    pub data: Arc<BTreeMap<String, String>>,
}

impl Interaction {
    /// Pending or live work of this session: its own interactions that are not in wrap-up,
    /// and supervised calls it has joined. A supervised call it only watches is not its work.
    pub fn is_work(&self) -> bool {
        match self.supervision {
            Supervision::Own => self.state.is_live(),
            Supervision::Supervised => false,
            _ => self.state.is_live(),
        }
    }

    /// How many parties the call has: the participants when reported, else the count.
    pub fn party_count(&self) -> u32 {
        if self.participants.is_empty() {
            self.parties
        } else {
            // Bounded by limits::MAX_PARTIES when the state was admitted.
            u32::try_from(self.participants.len()).unwrap_or(u32::MAX)
        }
    }

    /// A new interaction with no relations, flags or data; parties default to two.
    pub fn new(id: Id, channel: Id, direction: Direction, state: InteractionState) -> Self {
        Self {
            id,
            channel,
            direction,
            state,
            consult_of: None,
            consult_intent: ConsultIntent::Unspecified,
            preview: false,
            callback_of: None,
            parties: 2,
            participants: Vec::new(),
            recording: Recording::Off,
            supervision: Supervision::Own,
            monitored: false,
            muted: false,
            disposition: String::new(),
            caller: Arc::default(),
            queue: Arc::default(),
            data: Arc::default(),
        }
    }
}

/// The whole CTI state of one session.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionState {
    /// Channels, in the order the IP listed them.
    pub channels: Vec<Channel>,
    /// Tracked (not ended) interactions, in arrival order.
    pub interactions: Vec<Interaction>,
}

impl SessionState {
    /// The channel with `id`.
    pub fn channel(&self, id: &Id) -> Option<&Channel> {
        self.channels.iter().find(|c| &c.id == id)
    }

    /// The interaction with `id`.
    pub fn interaction(&self, id: &Id) -> Option<&Interaction> {
        self.interactions.iter().find(|i| &i.id == id)
    }
}
