//! Custom-rule conditions written in CEL, compiled once into a small typed tree that is
//! evaluated straight against the engine's state, without building CEL values per call.
//!
//! The supported subset is what a condition over a session needs: literals, the variables
//! below, `!`, `&&`, `||`, comparisons, `in` (a list literal, or a key of `interaction.data`),
//! `has(interaction.data.key)`, `size()`, and the string methods `startsWith`, `endsWith`
//! and `contains`. Anything else is refused at load with its position.

use cel::common::ast::{Expr, IdedExpr, LiteralValue, operators};
use wfm_engine::{AgentState, Condition, Facts};

/// Which variables a rule can see: decided by the kind of its capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// `session.*` only.
    Session,
    /// `session.*` and `channel.*`.
    Channel,
    /// `session.*`, `channel.*` (the interaction's channel) and `interaction.*`.
    Interaction,
}

/// The variables of every scope, their types, and what they read.
pub const VARIABLES: &[(&str, Type, Scope, &str)] = &[
    (
        "session.logged_in",
        Type::Bool,
        Scope::Session,
        "some channel is logged in",
    ),
    (
        "session.interactions",
        Type::Int,
        Scope::Session,
        "number of tracked interactions",
    ),
    (
        "session.agent_group",
        Type::Str,
        Scope::Session,
        "the agent's group, \"\" when none",
    ),
    (
        "session.other_channels_logged_in",
        Type::Int,
        Scope::Channel,
        "logged-in channels besides this one",
    ),
    (
        "session.other_channels_busy",
        Type::Int,
        Scope::Channel,
        "busy channels besides this one",
    ),
    ("channel.id", Type::Str, Scope::Channel, "channel id"),
    (
        "channel.media",
        Type::Str,
        Scope::Channel,
        "voice, chat, email, task or callback",
    ),
    (
        "channel.state",
        Type::Str,
        Scope::Channel,
        "agent state, e.g. not_ready",
    ),
    (
        "channel.reason",
        Type::Str,
        Scope::Channel,
        "not-ready reason code, \"\" when none",
    ),
    (
        "channel.pending",
        Type::Str,
        Scope::Channel,
        "ready, not_ready, or \"\" when none",
    ),
    (
        "channel.pending_reason",
        Type::Str,
        Scope::Channel,
        "reason of a pending not-ready",
    ),
    (
        "channel.state_secs",
        Type::Int,
        Scope::Channel,
        "whole seconds in the agent state; compared with int literals only",
    ),
    (
        "channel.interactions",
        Type::Int,
        Scope::Channel,
        "the channel's own interactions, in any state",
    ),
    (
        "channel.capacity",
        Type::Int,
        Scope::Channel,
        "reported capacity, 0 when not reported",
    ),
    (
        "interaction.id",
        Type::Str,
        Scope::Interaction,
        "interaction id",
    ),
    (
        "interaction.media",
        Type::Str,
        Scope::Interaction,
        "the media of its channel",
    ),
    (
        "interaction.state",
        Type::Str,
        Scope::Interaction,
        "e.g. connected, held, wrap_up",
    ),
    (
        "interaction.direction",
        Type::Str,
        Scope::Interaction,
        "inbound, outbound, internal, consult",
    ),
    (
        "interaction.parties",
        Type::Int,
        Scope::Interaction,
        "parties on the call, the agent included",
    ),
    (
        "interaction.participants",
        Type::Int,
        Scope::Interaction,
        "party count: the listed participants, else the reported parties",
    ),
    (
        "interaction.supervision",
        Type::Str,
        Scope::Interaction,
        "own, supervised, monitoring, whispering or barged",
    ),
    (
        "interaction.recording",
        Type::Str,
        Scope::Interaction,
        "off, active or paused",
    ),
    (
        "interaction.muted",
        Type::Bool,
        Scope::Interaction,
        "the agent is muted",
    ),
    (
        "interaction.disposition",
        Type::Str,
        Scope::Interaction,
        "disposition code, \"\" when none",
    ),
    (
        "interaction.consult_of",
        Type::Str,
        Scope::Interaction,
        "the call it consults for, \"\" when none",
    ),
    (
        "interaction.data",
        Type::Map,
        Scope::Interaction,
        "attached data; a missing key reads as null",
    ),
];

/// The static type of an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// `true` / `false`.
    Bool,
    /// A 64-bit integer.
    Int,
    /// A string.
    Str,
    /// A string, or null when an attached-data key is missing.
    OptStr,
    /// `interaction.data`.
    Map,
    /// `null`.
    Null,
    /// A list literal of strings.
    List,
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::Bool => "bool",
            Type::Int => "int",
            Type::Str | Type::OptStr => "string",
            Type::Map => "map",
            Type::Null => "null",
            Type::List => "list",
        }
    }

    fn comparable(self, other: Type) -> bool {
        let s = |t| matches!(t, Type::Str | Type::OptStr);
        (self == other && self != Type::Map)
            || (s(self) && s(other))
            || (self == Type::Null && matches!(other, Type::OptStr | Type::Null))
            || (other == Type::Null && self == Type::OptStr)
    }
}

/// A compile error at a byte offset of the expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CelError {
    /// Byte offset in the expression.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    LoggedIn,
    Interactions,
    AgentGroup,
    StateSecs,
    OtherLoggedIn,
    OtherBusy,
    ChannelInteractions,
    ChannelCapacity,
    Participants,
    Supervision,
    ChannelId,
    ChannelMedia,
    ChannelState,
    ChannelReason,
    ChannelPending,
    ChannelPendingReason,
    Id,
    Media,
    State,
    Direction,
    Parties,
    Recording,
    Muted,
    Disposition,
    ConsultOf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StrFn {
    StartsWith,
    EndsWith,
    Contains,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Bool(bool),
    Int(i64),
    Str(String),
    Null,
    Var(Var),
    /// `interaction.data` itself: only meaningful under `[]` and `in`, which read the state directly.
    DataMap,
    /// `interaction.data[key]`.
    Data(Box<Node>),
    /// `key in interaction.data`, `has(interaction.data.key)`.
    HasData(Box<Node>),
    Not(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Compare(Cmp, Box<Node>, Box<Node>),
    InList(Box<Node>, Vec<Node>),
    Str2(StrFn, Box<Node>, Box<Node>),
    Size(Box<Node>),
}

/// A compiled condition.
#[derive(Debug, Clone, PartialEq)]
pub struct CelCondition {
    root: Node,
    /// The seconds in state at which its answer may change (see [`Condition::time_marks`]).
    marks: Vec<u64>,
}

/// Compiles `source` for a rule of `scope`; the result must be a bool.
pub fn compile(source: &str, scope: Scope) -> Result<CelCondition, CelError> {
    let program = cel::Env::stdlib().compile(source).map_err(|errors| {
        let first = errors.errors.first();
        CelError {
            offset: first.map_or(0, |e| offset_of(source, e.pos)),
            message: first.map_or_else(|| "invalid expression".to_string(), |e| e.msg.clone()),
        }
    })?;
    let info = program.source_info();
    let at = |id: u64| info.offset_for(id).map_or(0, |(start, _)| start as usize);
    let compiler = Compiler { scope, at: &at };
    let (root, ty) = compiler.node(program.expression())?;
    if ty != Type::Bool {
        return Err(CelError {
            offset: 0,
            message: format!("a condition must be a bool, this is a {}", ty.name()),
        });
    }
    let mut marks = Vec::new();
    time_marks(&root, &mut marks);
    Ok(CelCondition { root, marks })
}

/// The seconds at which a comparison of `channel.state_secs` with a literal `t` may change
/// its answer: `t` (for `==`, `>=`, `<`) and `t + 1` (for `>`, `<=`, `!=`).
fn time_marks(node: &Node, marks: &mut Vec<u64>) {
    match node {
        Node::Compare(_, a, b) => {
            if let (Node::Var(Var::StateSecs), Node::Int(t))
            | (Node::Int(t), Node::Var(Var::StateSecs)) = (a.as_ref(), b.as_ref())
                && let Ok(t) = u64::try_from(*t)
            {
                marks.extend([t, t.saturating_add(1)]);
            }
        }
        Node::Not(a) => time_marks(a, marks),
        Node::And(a, b) | Node::Or(a, b) => {
            time_marks(a, marks);
            time_marks(b, marks);
        }
        _ => {}
    }
}

/// Converts the parser's 1-based (line, column) into a byte offset; the parser counts a
/// column in characters, so a line with accents or symbols before the error is walked.
fn offset_of(source: &str, (line, column): (isize, isize)) -> usize {
    let line = usize::try_from(line.max(1) - 1).unwrap_or(0);
    let column = usize::try_from(column.max(1) - 1).unwrap_or(0);
    let start: usize = source.split_inclusive('\n').take(line).map(str::len).sum();
    let rest = &source[start..];
    start
        + rest
            .char_indices()
            .nth(column)
            .map_or(rest.len(), |(at, _)| at)
}

struct Compiler<'a> {
    scope: Scope,
    at: &'a dyn Fn(u64) -> usize,
}

impl Compiler<'_> {
    fn error(&self, expr: &IdedExpr, message: impl Into<String>) -> CelError {
        // A dotted name is reported where it starts, not at its last dot.
        let mut root = expr;
        while let Expr::Select(select) = &root.expr {
            root = &select.operand;
        }
        CelError {
            offset: (self.at)(root.id),
            message: message.into(),
        }
    }

    fn expect(&self, expr: &IdedExpr, want: Type) -> Result<Node, CelError> {
        let (node, ty) = self.node(expr)?;
        let fits = ty == want || (want == Type::Str && ty == Type::OptStr);
        if fits {
            Ok(node)
        } else {
            Err(self.error(
                expr,
                format!("expected a {}, found a {}", want.name(), ty.name()),
            ))
        }
    }

    fn node(&self, expr: &IdedExpr) -> Result<(Node, Type), CelError> {
        match &expr.expr {
            Expr::Literal(literal) => self.literal(expr, literal),
            Expr::Ident(_) | Expr::Select(_) => self.reference(expr),
            Expr::Call(call) => {
                self.call(expr, &call.func_name, call.target.as_deref(), &call.args)
            }
            Expr::List(_) => Err(self.error(expr, "a list can only follow `in`")),
            Expr::Comprehension(_) => {
                Err(self.error(expr, "macros such as all() and exists() are not supported"))
            }
            Expr::Map(_) | Expr::Struct(_) | Expr::Unspecified => {
                Err(self.error(expr, "map and message literals are not supported"))
            }
        }
    }

    fn literal(&self, expr: &IdedExpr, literal: &LiteralValue) -> Result<(Node, Type), CelError> {
        Ok(match literal {
            LiteralValue::Boolean(b) => (Node::Bool(*b.inner()), Type::Bool),
            LiteralValue::Int(i) => (Node::Int(*i.inner()), Type::Int),
            LiteralValue::UInt(u) => {
                let value =
                    i64::try_from(*u.inner()).map_err(|_| self.error(expr, "integer too large"))?;
                (Node::Int(value), Type::Int)
            }
            LiteralValue::String(s) => (Node::Str(s.inner().to_string()), Type::Str),
            LiteralValue::Null => (Node::Null, Type::Null),
            LiteralValue::Double(_) | LiteralValue::Bytes(_) => {
                return Err(self.error(
                    expr,
                    "only bool, int, string and null literals are supported",
                ));
            }
        })
    }

    /// A dotted name: a variable, or `interaction.data.<key>`; `has()` arrives as a test select.
    fn reference(&self, expr: &IdedExpr) -> Result<(Node, Type), CelError> {
        if let Expr::Select(select) = &expr.expr {
            let operand = self.dotted(&select.operand)?;
            if operand == "interaction.data" {
                self.variable(&select.operand, "interaction.data")?;
                let key = Box::new(Node::Str(select.field.clone()));
                return Ok(if select.test {
                    (Node::HasData(key), Type::Bool)
                } else {
                    (Node::Data(key), Type::OptStr)
                });
            }
            if select.test {
                return Err(self.error(expr, "has() is supported on interaction.data keys only"));
            }
        }
        let name = self.dotted(expr)?;
        self.variable(expr, &name)
    }

    fn dotted(&self, expr: &IdedExpr) -> Result<String, CelError> {
        match &expr.expr {
            Expr::Ident(name) => Ok(name.clone()),
            Expr::Select(select) if !select.test => Ok(format!(
                "{}.{}",
                self.dotted(&select.operand)?,
                select.field
            )),
            _ => Err(self.error(expr, "expected a variable name")),
        }
    }

    fn variable(&self, expr: &IdedExpr, name: &str) -> Result<(Node, Type), CelError> {
        let Some((_, ty, scope, _)) = VARIABLES.iter().find(|(n, ..)| *n == name) else {
            let visible: Vec<&str> = VARIABLES
                .iter()
                .filter(|(_, _, scope, _)| *scope <= self.scope)
                .map(|(n, ..)| *n)
                .collect();
            return Err(self.error(
                expr,
                format!("unknown variable `{name}`; known: {}", visible.join(", ")),
            ));
        };
        if *scope > self.scope {
            return Err(self.error(
                expr,
                format!(
                    "`{name}` is not available to rules on {} capabilities",
                    scope_name(self.scope)
                ),
            ));
        }
        let var = match name {
            "session.logged_in" => Var::LoggedIn,
            "session.interactions" => Var::Interactions,
            "session.agent_group" => Var::AgentGroup,
            "channel.state_secs" => Var::StateSecs,
            "session.other_channels_logged_in" => Var::OtherLoggedIn,
            "session.other_channels_busy" => Var::OtherBusy,
            "channel.interactions" => Var::ChannelInteractions,
            "channel.capacity" => Var::ChannelCapacity,
            "interaction.participants" => Var::Participants,
            "interaction.supervision" => Var::Supervision,
            "channel.id" => Var::ChannelId,
            "channel.media" => Var::ChannelMedia,
            "channel.state" => Var::ChannelState,
            "channel.reason" => Var::ChannelReason,
            "channel.pending" => Var::ChannelPending,
            "channel.pending_reason" => Var::ChannelPendingReason,
            "interaction.id" => Var::Id,
            "interaction.media" => Var::Media,
            "interaction.state" => Var::State,
            "interaction.direction" => Var::Direction,
            "interaction.parties" => Var::Parties,
            "interaction.recording" => Var::Recording,
            "interaction.muted" => Var::Muted,
            "interaction.disposition" => Var::Disposition,
            "interaction.consult_of" => Var::ConsultOf,
            _ => return Ok((Node::DataMap, Type::Map)),
        };
        Ok((Node::Var(var), *ty))
    }

    fn call(
        &self,
        expr: &IdedExpr,
        function: &str,
        target: Option<&IdedExpr>,
        args: &[IdedExpr],
    ) -> Result<(Node, Type), CelError> {
        let boxed = |node: Node| Box::new(node);
        match (function, target, args) {
            (operators::LOGICAL_NOT, None, [a]) => {
                Ok((Node::Not(boxed(self.expect(a, Type::Bool)?)), Type::Bool))
            }
            (operators::LOGICAL_AND, None, [a, b]) => Ok((
                Node::And(
                    boxed(self.expect(a, Type::Bool)?),
                    boxed(self.expect(b, Type::Bool)?),
                ),
                Type::Bool,
            )),
            (operators::LOGICAL_OR, None, [a, b]) => Ok((
                Node::Or(
                    boxed(self.expect(a, Type::Bool)?),
                    boxed(self.expect(b, Type::Bool)?),
                ),
                Type::Bool,
            )),
            (operators::INDEX, None, [map, key]) => {
                let (_, ty) = self.node(map)?;
                if ty != Type::Map {
                    return Err(self.error(map, "only interaction.data can be indexed"));
                }
                Ok((
                    Node::Data(boxed(self.expect(key, Type::Str)?)),
                    Type::OptStr,
                ))
            }
            (operators::IN, None, [item, collection]) => self.membership(item, collection),
            ("size", None, [a]) | ("size", Some(a), []) => {
                Ok((Node::Size(boxed(self.expect(a, Type::Str)?)), Type::Int))
            }
            ("startsWith" | "endsWith" | "contains", Some(text), [needle]) => {
                let f = match function {
                    "startsWith" => StrFn::StartsWith,
                    "endsWith" => StrFn::EndsWith,
                    _ => StrFn::Contains,
                };
                Ok((
                    Node::Str2(
                        f,
                        boxed(self.expect(text, Type::Str)?),
                        boxed(self.expect(needle, Type::Str)?),
                    ),
                    Type::Bool,
                ))
            }
            (op, None, [a, b]) if comparison(op).is_some() => {
                let cmp = comparison(op).unwrap_or(Cmp::Eq);
                let (left, lt) = self.node(a)?;
                let (right, rt) = self.node(b)?;
                if !lt.comparable(rt) {
                    return Err(self.error(
                        expr,
                        format!("cannot compare a {} with a {}", lt.name(), rt.name()),
                    ));
                }
                let is_time = |n: &Node| n == &Node::Var(Var::StateSecs);
                let is_literal = |n: &Node| matches!(n, Node::Int(_));
                if (is_time(&left) && !is_literal(&right))
                    || (is_time(&right) && !is_literal(&left))
                {
                    return Err(self.error(
                        expr,
                        "`channel.state_secs` can only be compared with an int literal, so that \
                         the engine knows when the answer changes",
                    ));
                }
                let ordered = !matches!(cmp, Cmp::Eq | Cmp::Ne);
                if ordered && lt != Type::Int {
                    return Err(self.error(expr, format!("`{}` needs ints", op.trim_matches('_'))));
                }
                Ok((Node::Compare(cmp, boxed(left), boxed(right)), Type::Bool))
            }
            _ => Err(self.error(
                expr,
                format!(
                    "unsupported function or operator `{}`",
                    function.trim_matches('_')
                ),
            )),
        }
    }

    fn membership(&self, item: &IdedExpr, collection: &IdedExpr) -> Result<(Node, Type), CelError> {
        match &collection.expr {
            Expr::List(list) => {
                let item = self.expect(item, Type::Str)?;
                let elements = list
                    .elements
                    .iter()
                    .map(|e| self.expect(e, Type::Str))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((Node::InList(Box::new(item), elements), Type::Bool))
            }
            _ => {
                let (_, ty) = self.node(collection)?;
                if ty != Type::Map {
                    return Err(
                        self.error(collection, "`in` needs a list literal or interaction.data")
                    );
                }
                Ok((
                    Node::HasData(Box::new(self.expect(item, Type::Str)?)),
                    Type::Bool,
                ))
            }
        }
    }
}

fn comparison(op: &str) -> Option<Cmp> {
    Some(match op {
        operators::EQUALS => Cmp::Eq,
        operators::NOT_EQUALS => Cmp::Ne,
        operators::LESS => Cmp::Lt,
        operators::LESS_EQUALS => Cmp::Le,
        operators::GREATER => Cmp::Gt,
        operators::GREATER_EQUALS => Cmp::Ge,
        _ => return None,
    })
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Session => "session",
        Scope::Channel => "channel",
        Scope::Interaction => "interaction",
    }
}

/// A value during evaluation, borrowed from the rule or the state: evaluation never allocates.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Val<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Str(&'a str),
}

impl CelCondition {
    fn eval<'a>(&'a self, node: &'a Node, facts: &Facts<'a>) -> Val<'a> {
        match node {
            Node::Bool(b) => Val::Bool(*b),
            Node::Int(i) => Val::Int(*i),
            Node::Str(s) => Val::Str(s),
            Node::Null => Val::Null,
            Node::Var(var) => read(*var, facts),
            Node::DataMap => Val::Null,
            Node::Data(key) => match (self.eval(key, facts), facts.interaction) {
                (Val::Str(key), Some(item)) => {
                    item.data.get(key).map_or(Val::Null, |v| Val::Str(v))
                }
                _ => Val::Null,
            },
            Node::HasData(key) => match (self.eval(key, facts), facts.interaction) {
                (Val::Str(key), Some(item)) => Val::Bool(item.data.contains_key(key)),
                _ => Val::Bool(false),
            },
            Node::Not(a) => Val::Bool(!self.truth(a, facts)),
            Node::And(a, b) => Val::Bool(self.truth(a, facts) && self.truth(b, facts)),
            Node::Or(a, b) => Val::Bool(self.truth(a, facts) || self.truth(b, facts)),
            Node::Compare(cmp, a, b) => {
                Val::Bool(compare(*cmp, self.eval(a, facts), self.eval(b, facts)))
            }
            Node::InList(item, list) => {
                let item = self.eval(item, facts);
                Val::Bool(list.iter().any(|e| self.eval(e, facts) == item))
            }
            Node::Str2(f, text, needle) => match (self.eval(text, facts), self.eval(needle, facts))
            {
                (Val::Str(t), Val::Str(n)) => Val::Bool(match f {
                    StrFn::StartsWith => t.starts_with(n),
                    StrFn::EndsWith => t.ends_with(n),
                    StrFn::Contains => t.contains(n),
                }),
                _ => Val::Bool(false),
            },
            Node::Size(a) => match self.eval(a, facts) {
                Val::Str(s) => Val::Int(i64::try_from(s.chars().count()).unwrap_or(i64::MAX)),
                _ => Val::Int(0),
            },
        }
    }

    fn truth(&self, node: &Node, facts: &Facts<'_>) -> bool {
        self.eval(node, facts) == Val::Bool(true)
    }
}

fn compare(cmp: Cmp, a: Val<'_>, b: Val<'_>) -> bool {
    match cmp {
        Cmp::Eq => a == b,
        Cmp::Ne => a != b,
        _ => match (a, b) {
            (Val::Int(a), Val::Int(b)) => match cmp {
                Cmp::Lt => a < b,
                Cmp::Le => a <= b,
                Cmp::Gt => a > b,
                _ => a >= b,
            },
            _ => false,
        },
    }
}

/// How many of `items` there are, as a CEL int; counting allocates nothing.
fn count<'a, T>(items: impl Iterator<Item = T>) -> Val<'a> {
    Val::Int(i64::try_from(items.count()).unwrap_or(i64::MAX))
}

/// The session's channels besides the target's that satisfy `keep`.
fn others<'a>(facts: &Facts<'a>, keep: fn(&wfm_engine::Channel) -> bool) -> Val<'a> {
    let Some(channel) = facts.channel else {
        return Val::Null;
    };
    count(
        facts
            .state
            .channels
            .iter()
            .filter(|c| c.id != channel.id && keep(c)),
    )
}

fn read<'a>(var: Var, facts: &Facts<'a>) -> Val<'a> {
    let text = |s: Option<&'a str>| s.map_or(Val::Null, Val::Str);
    let channel = facts.channel;
    let item = facts.interaction;
    match var {
        Var::LoggedIn => Val::Bool(facts.state.channels.iter().any(|c| c.state.is_logged_in())),
        Var::Interactions => {
            Val::Int(i64::try_from(facts.state.interactions.len()).unwrap_or(i64::MAX))
        }
        Var::AgentGroup => Val::Str(facts.agent_group),
        Var::StateSecs => channel.map_or(Val::Null, |_| {
            Val::Int(i64::try_from(facts.state_secs).unwrap_or(i64::MAX))
        }),
        Var::OtherLoggedIn => others(facts, |c| c.state.is_logged_in()),
        Var::OtherBusy => others(facts, |c| c.state == AgentState::Busy),
        Var::ChannelInteractions => {
            channel.map_or(Val::Null, |c| {
                count(
                    facts.state.interactions.iter().filter(|i| {
                        i.channel == c.id && i.supervision == wfm_engine::Supervision::Own
                    }),
                )
            })
        }
        Var::ChannelCapacity => channel.map_or(Val::Null, |c| Val::Int(i64::from(c.capacity))),
        Var::Participants => item.map_or(Val::Null, |i| Val::Int(i64::from(i.party_count()))),
        Var::Supervision => text(item.map(|i| i.supervision.as_str())),
        Var::ChannelId => text(channel.map(|c| c.id.as_str())),
        Var::ChannelMedia | Var::Media => text(channel.map(|c| c.media.as_str())),
        Var::ChannelState => text(channel.map(|c| c.state.as_str())),
        Var::ChannelReason => text(channel.map(|c| c.reason.as_str())),
        Var::ChannelPending => text(channel.map(|c| c.pending.map_or("", |p| p.as_str()))),
        Var::ChannelPendingReason => text(channel.map(|c| c.pending_reason.as_str())),
        Var::Id => text(item.map(|i| i.id.as_str())),
        Var::State => text(item.map(|i| i.state.as_str())),
        Var::Direction => text(item.map(|i| i.direction.as_str())),
        Var::Parties => item.map_or(Val::Null, |i| Val::Int(i64::from(i.parties))),
        Var::Recording => text(item.map(|i| i.recording.as_str())),
        Var::Muted => item.map_or(Val::Null, |i| Val::Bool(i.muted)),
        Var::Disposition => text(item.map(|i| i.disposition.as_str())),
        Var::ConsultOf => text(item.map(|i| i.consult_of.as_ref().map_or("", |c| c.as_str()))),
    }
}

impl Condition for CelCondition {
    fn holds(&self, facts: &Facts<'_>) -> bool {
        self.truth(&self.root, facts)
    }

    fn time_marks(&self) -> Vec<u64> {
        self.marks.clone()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use wfm_engine::InteractionState;
    use wfm_engine::testkit::*;

    fn holds(source: &str) -> bool {
        let mut c = call("c1", "voice", InteractionState::Connected);
        std::sync::Arc::make_mut(&mut c.data).insert("tier".into(), "vip".into());
        c.parties = 3;
        let mut v = voice("voice", AgentState::NotReady);
        v.reason = "training".into();
        let st = state(vec![v], vec![c]);
        let facts = Facts {
            channel: Some(&st.channels[0]),
            interaction: Some(&st.interactions[0]),
            agent_group: "vip desk",
            state_secs: 42,
            ..Facts::of(&st)
        };
        compile(source, Scope::Interaction).unwrap().holds(&facts)
    }

    #[test]
    fn conditions_evaluate_against_the_state() {
        for (source, expected) in [
            (r#"interaction.data.tier == "vip""#, true),
            (r#"interaction.data["tier"] == "gold""#, false),
            (r#"interaction.data.segment == "vip""#, false),
            (r#"interaction.data.segment == null"#, true),
            (
                r#"has(interaction.data.tier) && !has(interaction.data.segment)"#,
                true,
            ),
            (r#""tier" in interaction.data"#, true),
            (r#"channel.reason in ["training", "coaching"]"#, true),
            (r#"interaction.parties >= 3 || false"#, true),
            (r#"interaction.parties < 3"#, false),
            (
                r#"channel.reason.startsWith("train") && size(channel.reason) == 8"#,
                true,
            ),
            (
                r#"interaction.state == "connected" && interaction.media == "voice" && !interaction.muted"#,
                true,
            ),
            (r#"session.logged_in && session.interactions == 1"#, true),
            (r#"interaction.participants == 3"#, true),
            (r#"interaction.supervision == "own""#, true),
            (
                r#"channel.interactions == 1 && channel.capacity == 0"#,
                true,
            ),
            (r#"session.other_channels_logged_in == 0"#, true),
            (r#"session.agent_group == "vip desk""#, true),
            (r#"session.agent_group.startsWith("sales")"#, false),
            (
                r#"channel.state_secs >= 42 && channel.state_secs < 43"#,
                true,
            ),
            (r#"channel.state_secs > 42"#, false),
        ] {
            assert_eq!(holds(source), expected, "{source}");
        }
    }

    #[test]
    fn a_rule_can_see_the_sessions_other_channels_and_the_channels_load() {
        let mut chat = chat_channel("chat", AgentState::Busy);
        chat.capacity = 3;
        let st = state(
            vec![voice("voice", AgentState::Ready), chat],
            vec![
                chat_interaction("x1", InteractionState::Active),
                chat_interaction("x2", InteractionState::Offered),
            ],
        );
        let facts = |channel: usize| Facts {
            channel: Some(&st.channels[channel]),
            ..Facts::of(&st)
        };
        let on = |source: &str, channel| {
            compile(source, Scope::Channel)
                .unwrap()
                .holds(&facts(channel))
        };
        // The voice channel sees one other channel, busy.
        assert!(on("session.other_channels_logged_in == 1", 0));
        assert!(on("session.other_channels_busy == 1", 0));
        assert!(on("channel.interactions == 0", 0));
        // The chat channel sees its two chats and its capacity, and an idle voice channel.
        assert!(on("channel.interactions == 2 && channel.capacity == 3", 1));
        assert!(on("session.other_channels_busy == 0", 1));
    }

    #[test]
    fn a_rule_on_the_time_in_state_names_when_its_answer_may_change() {
        let marks = |source: &str| compile(source, Scope::Channel).unwrap().marks;
        assert_eq!(marks("channel.state_secs > 300"), vec![300, 301]);
        assert_eq!(
            marks("!(60 <= channel.state_secs) || channel.state_secs == 5"),
            vec![60, 61, 5, 6]
        );
        assert_eq!(marks("channel.state == 'ready'"), Vec::<u64>::new());
        // A negative literal is never crossed: time in state starts at 0.
        assert_eq!(marks("channel.state_secs > -1"), Vec::<u64>::new());
        let err = compile("channel.state_secs > channel.capacity", Scope::Channel).unwrap_err();
        assert!(
            err.message.contains("only be compared with an int literal"),
            "{err:?}"
        );
        let err = compile("channel.state_secs > 1", Scope::Session).unwrap_err();
        assert!(
            err.message.contains("not available to rules on session"),
            "{err:?}"
        );
    }

    fn chat_interaction(id: &str, st: InteractionState) -> wfm_engine::Interaction {
        chat(id, "chat", st)
    }

    #[test]
    fn compile_errors_name_the_problem_and_its_offset() {
        let err = |source: &str, scope| compile(source, scope).unwrap_err();
        let e = err("interaction.data.tier == ", Scope::Interaction);
        assert!(
            e.message.contains("mismatched input") || e.message.contains("Syntax"),
            "{e:?}"
        );
        // The parser counts columns in characters; the offset is in bytes, at the `&`.
        let e = err("\"é\" == \"✓\" & x\n\"é\" & x", Scope::Session);
        assert_eq!(e.offset, "\"é\" == \"✓\" ".len());
        let e = err("true\n&& \"é\" & x", Scope::Session);
        assert_eq!(e.offset, "true\n&& \"é\" ".len());
        let e = err("agent.skill == \"x\"", Scope::Interaction);
        assert_eq!(e.offset, 0);
        assert!(
            e.message.starts_with("unknown variable `agent.skill`"),
            "{e:?}"
        );
        let e = err(
            "channel.state == 'busy' && interaction.muted",
            Scope::Channel,
        );
        assert_eq!(
            (e.offset, e.message.as_str()),
            (
                27,
                "`interaction.muted` is not available to rules on channel capabilities"
            )
        );
        assert_eq!(
            err("interaction.parties == 'x'", Scope::Interaction).message,
            "cannot compare a int with a string"
        );
        assert_eq!(
            err("interaction.id", Scope::Interaction).message,
            "a condition must be a bool, this is a string"
        );
        assert!(
            err("[1].all(x, x > 0)", Scope::Interaction)
                .message
                .contains("not supported")
        );
        assert_eq!(
            err("1.5 > 1", Scope::Session).message,
            "only bool, int, string and null literals are supported"
        );
    }
}
