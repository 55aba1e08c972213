//! Soak mode: a stack run for a long time at a steady rate with churn (sessions created and
//! ended, clients connecting, disconnecting and taking over, malformed frames), and at the
//! end three questions: did anything fail that should not have, does every client show what
//! the manager holds (and the manager what the IP reported), and did memory or file
//! descriptors creep up after the warm-up.
//!
//! - [`churn`]: one slot (session + bound client) and the actions done to it.
//! - [`proc`]: `/proc` readings of resident memory and descriptors, and their trend.
//!
//! The number of live sessions stays at `sessions` throughout (an ended one is replaced at
//! once), so a steady state exists and growth after the warm-up is a leak, not load.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::resilient::Manager;

pub mod churn;
pub mod proc;

use churn::{Action, Command, Context};
use proc::{Sample, Trend, Watched};

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// Live sessions, each with its bound client.
    pub sessions: usize,
    /// Actions per second across all sessions (most of them CTI updates).
    pub rate: u64,
    /// How long to churn.
    pub duration: Duration,
    /// Processes whose memory and descriptors are sampled.
    pub watch: Vec<Watched>,
    /// Prints progress to stderr.
    pub progress: bool,
}

/// Counters shared by the slots.
#[derive(Debug, Default)]
pub struct Tally {
    updates: AtomicU64,
    ends: AtomicU64,
    reconnects: AtomicU64,
    takeovers: AtomicU64,
    malformed: AtomicU64,
    reload_races: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one unexpected error of `kind`.
    fn error(&self, kind: &str) {
        tracing::warn!(kind, "soak: unexpected error");
        *self
            .errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(kind.to_string())
            .or_default() += 1;
    }
}

/// What the churn did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Actions {
    /// CTI updates applied.
    pub updates: u64,
    /// Sessions ended and replaced.
    pub ends: u64,
    /// Clients closed and replaced by a new connection.
    pub reconnects: u64,
    /// Bindings taken over by a second client.
    pub takeovers: u64,
    /// Malformed frames sent (invalid JSON, unknown messageType, oversized).
    pub malformed: u64,
    /// Reconnects that found the old binding not yet released and took it over, as the
    /// protocol says to (not errors).
    pub reload_races: u64,
    /// Actions not started because their slot was still busy with earlier ones.
    pub skipped: u64,
}

/// The soak's findings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SoakReport {
    /// Live sessions.
    pub sessions: usize,
    /// Target actions per second.
    pub target_rate: u64,
    /// Seconds of churn.
    pub seconds: f64,
    /// Actions per second started.
    pub actions_per_sec: f64,
    /// What was done.
    pub actions: Actions,
    /// Unexpected errors.
    pub errors: u64,
    /// Unexpected errors by kind.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Sessions checked at the end.
    pub checked: u64,
    /// Sessions whose manager state differs from what the IP reported.
    pub lost: u64,
    /// Sessions whose bound client shows another view state than the manager's.
    pub stale: u64,
    /// The first few lost or stale sessions, described.
    pub examples: Vec<String>,
    /// Seconds of warm-up excluded from the growth figures (20% of the run).
    pub warmup_secs: f64,
    /// Memory and descriptors of each watched process.
    pub processes: Vec<Trend>,
}

/// The growth of resident memory after the warm-up that the goal allows, percent.
pub const RSS_GOAL_PCT: f64 = 2.0;

impl SoakReport {
    /// Whether there were no errors and no lost or stale states (what CI requires).
    pub fn correct(&self) -> bool {
        self.errors == 0 && self.lost == 0 && self.stale == 0
    }

    /// Whether every watched process grew less than [`RSS_GOAL_PCT`] after the warm-up.
    pub fn memory_flat(&self) -> bool {
        self.processes
            .iter()
            .all(|p| p.rss_growth_pct < RSS_GOAL_PCT)
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let a = &self.actions;
        let mut out = format!(
            "wfm-sim soak: {} sessions, {} actions/s target, {:.0} s\n\
             \x20 actions/s started  {:>10.0}\n\
             \x20 updates            {:>10}\n\
             \x20 sessions ended     {:>10}\n\
             \x20 reconnects         {:>10}  (reload races taken over: {})\n\
             \x20 takeovers          {:>10}\n\
             \x20 malformed frames   {:>10}\n\
             \x20 skipped (busy)     {:>10}\n\
             \x20 errors             {:>10}\n",
            self.sessions,
            self.target_rate,
            self.seconds,
            self.actions_per_sec,
            a.updates,
            a.ends,
            a.reconnects,
            a.reload_races,
            a.takeovers,
            a.malformed,
            a.skipped,
            self.errors,
        );
        for (kind, count) in &self.errors_by_kind {
            out += &format!("      {count:>8}  {kind}\n");
        }
        out += &format!(
            "\x20 checked at the end {:>10}\n\
             \x20 lost states        {:>10}\n\
             \x20 stale states       {:>10}\n",
            self.checked, self.lost, self.stale
        );
        for example in &self.examples {
            out += &format!("    {example}\n");
        }
        out += &format!(
            "\x20 process trend after the {:.0} s warm-up (RSS MiB, open fds):\n",
            self.warmup_secs
        );
        for p in &self.processes {
            let mib = |s: Option<Sample>| s.map_or(0.0, |s| s.rss_kb as f64 / 1024.0);
            let fds = |s: Option<Sample>| s.map_or(0, |s| s.fds);
            out += &format!(
                "    {}: RSS {:.1} -> {:.1} (peak {:.1}) {:+.2}%, fds {} -> {} ({:+})\n",
                p.label,
                mib(p.baseline),
                mib(p.last),
                p.peak_rss_kb as f64 / 1024.0,
                p.rss_growth_pct,
                fds(p.baseline),
                fds(p.last),
                p.fd_growth,
            );
        }
        let verdict = |met: bool| if met { "met" } else { "NOT MET" };
        out += &format!(
            "  goal: 0 errors, 0 lost or stale states: {}; RSS growth < {RSS_GOAL_PCT}% after warm-up: {}\n",
            verdict(self.correct()),
            verdict(self.memory_flat()),
        );
        out
    }
}

/// Why the soak could not run.
#[derive(Debug, thiserror::Error)]
pub enum SoakError {
    /// No session could be set up at all.
    #[error("no session could be set up: {0:?}")]
    Setup(BTreeMap<String, u64>),
}

/// A small, fast random source for picking slots and actions (no need for quality).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Per mille of the actions that are each kind of churn; the rest are CTI updates.
const CHURN: [(Action, u64); 6] = [
    (Action::EndAndRecreate, 10),
    (Action::Reconnect, 10),
    (Action::Takeover, 10),
    (Action::InvalidJson, 5),
    (Action::UnknownType, 5),
    (Action::Oversized, 5),
];

fn pick(roll: u64) -> Action {
    let mut at = roll % 1000;
    for (action, share) in CHURN {
        if at < share {
            return action;
        }
        at -= share;
    }
    Action::Update
}

/// How often the processes are sampled: about 30 readings a run, every 1 to 5 s.
fn sample_every(duration: Duration) -> Duration {
    (duration / 30).clamp(Duration::from_secs(1), Duration::from_secs(5))
}

/// Sets up the slots, churns for the duration, checks every session, and reports.
pub async fn run(
    manager: Manager,
    mediabar_url: &str,
    options: &SoakOptions,
) -> Result<SoakReport, SoakError> {
    let tally = Arc::new(Tally::default());
    let context = Arc::new(Context {
        manager,
        mediabar_url: mediabar_url.to_string(),
        tally: Arc::clone(&tally),
        setup: Semaphore::new(64),
    });
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let mut slots = Vec::with_capacity(options.sessions);
    for index in 0..options.sessions {
        // A few actions may wait per slot; more means the slot is behind and they are skipped.
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(churn::run(
            Arc::clone(&context),
            index,
            rx,
            ready_tx.clone(),
        ));
        slots.push(tx);
    }
    drop(ready_tx);
    let mut failed = 0;
    for done in 1..=options.sessions {
        failed += usize::from(ready_rx.recv().await == Some(false));
        if options.progress && done % 1000 == 0 {
            eprintln!(
                "  {done} slots set up: {} bound, {failed} failed",
                done - failed
            );
        }
    }
    let setup_errors = tally
        .errors
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if options.sessions > 0 && setup_errors.values().sum::<u64>() >= options.sessions as u64 {
        return Err(SoakError::Setup(setup_errors));
    }

    let start = Instant::now();
    let samples: Vec<Vec<Sample>> = options.watch.iter().map(|_| Vec::new()).collect();
    let samples = Arc::new(Mutex::new(samples));
    let sampler = {
        let (samples, watch) = (Arc::clone(&samples), options.watch.clone());
        let every = sample_every(options.duration);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                let at = start.elapsed().as_secs_f64();
                let mut samples = samples.lock().unwrap_or_else(PoisonError::into_inner);
                for (watched, series) in watch.iter().zip(samples.iter_mut()) {
                    series.extend(watched.sample(at));
                }
            }
        })
    };

    let started = schedule(&slots, options, &tally, start).await;
    sampler.abort();
    let seconds = start.elapsed().as_secs_f64();
    // One last reading, before the check reads every session.
    {
        let mut samples = samples.lock().unwrap_or_else(PoisonError::into_inner);
        for (watched, series) in options.watch.iter().zip(samples.iter_mut()) {
            series.extend(watched.sample(seconds));
        }
    }
    if options.progress {
        eprintln!("  churn done; checking every session");
    }

    let mut answers = Vec::with_capacity(slots.len());
    for slot in &slots {
        let (tx, rx) = oneshot::channel();
        if slot.send(Command::Finish(tx)).await.is_ok() {
            answers.push(rx);
        }
    }
    let (mut checked, mut lost, mut stale, mut examples) = (0, 0, 0, Vec::new());
    for answer in answers {
        let Ok(verdict) = answer.await else { continue };
        checked += u64::from(verdict.checked);
        for (count, finding) in [(&mut lost, verdict.lost), (&mut stale, verdict.stale)] {
            if let Some(finding) = finding {
                *count += 1;
                if examples.len() < 5 {
                    examples.push(finding);
                }
            }
        }
    }

    let errors_by_kind = tally
        .errors
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let warmup_secs = options.duration.as_secs_f64() * 0.2;
    let samples = std::mem::take(&mut *samples.lock().unwrap_or_else(PoisonError::into_inner));
    let processes = options
        .watch
        .iter()
        .zip(samples)
        .map(|(watched, series)| Trend::of(watched.label(), series, warmup_secs))
        .collect();
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    Ok(SoakReport {
        sessions: options.sessions,
        target_rate: options.rate,
        seconds,
        actions_per_sec: started.0 as f64 / seconds.max(1e-9),
        actions: Actions {
            updates: load(&tally.updates),
            ends: load(&tally.ends),
            reconnects: load(&tally.reconnects),
            takeovers: load(&tally.takeovers),
            malformed: load(&tally.malformed),
            reload_races: load(&tally.reload_races),
            skipped: started.1,
        },
        errors: errors_by_kind.values().sum(),
        errors_by_kind,
        checked,
        lost,
        stale,
        examples,
        warmup_secs,
        processes,
    })
}

/// Hands out actions at `rate` to random slots until the duration is over; returns the
/// actions started and those skipped because their slot was busy.
async fn schedule(
    slots: &[mpsc::Sender<Command>],
    options: &SoakOptions,
    tally: &Tally,
    start: Instant,
) -> (u64, u64) {
    let seed = u64::from(std::process::id()) ^ start.elapsed().as_nanos() as u64;
    let mut random = SplitMix(seed);
    let (mut started, mut skipped) = (0u64, 0u64);
    let mut ticks = tokio::time::interval(Duration::from_millis(10));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_progress = 0;
    while start.elapsed() < options.duration && !slots.is_empty() {
        ticks.tick().await;
        let due = (start.elapsed().as_secs_f64() * options.rate as f64) as u64;
        while started + skipped < due {
            let slot = &slots[(random.next() % slots.len() as u64) as usize];
            match slot.try_send(Command::Act(pick(random.next()))) {
                Ok(()) => started += 1,
                Err(_) => skipped += 1,
            }
        }
        let second = start.elapsed().as_secs();
        if options.progress && second >= last_progress + 10 {
            last_progress = second;
            let errors: u64 = tally
                .errors
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .values()
                .sum();
            eprintln!(
                "  {second:>4} s  {started} actions started, {skipped} skipped, {errors} errors"
            );
        }
    }
    (started, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_actions_are_updates_and_every_churn_kind_occurs() {
        let picked: Vec<Action> = (0..1000).map(pick).collect();
        let updates = picked.iter().filter(|a| **a == Action::Update).count();
        assert_eq!(
            updates,
            1000 - CHURN.iter().map(|(_, s)| *s as usize).sum::<usize>()
        );
        for (action, share) in CHURN {
            assert_eq!(
                picked.iter().filter(|a| **a == action).count(),
                share as usize
            );
        }
    }

    #[test]
    fn the_sampling_interval_stays_within_a_few_seconds() {
        assert_eq!(
            sample_every(Duration::from_secs(60)),
            Duration::from_secs(2)
        );
        assert_eq!(
            sample_every(Duration::from_secs(600)),
            Duration::from_secs(5)
        );
        assert_eq!(sample_every(Duration::from_secs(3)), Duration::from_secs(1));
    }
}
