//! Workflow profile files: named profiles in TOML that extend one another, set options and
//! feature switches, and add custom rules written in CEL.
//!
//! A file is checked completely before use; every problem is reported as
//! `file:line:col: message`, and a file with any problem yields no profiles at all.
//!
//! # Layout
//! - [`ProfileSet`]: the loaded profiles and how a session's profile is chosen.
//! - `file`: the TOML format and its validation.
//! - [`cel`]: CEL conditions compiled to a small typed tree.
//! - [`LoadError`], [`Diagnostic`]: positioned problems.

pub mod cel;
mod file;
mod set;

pub use file::{Diagnostic, LoadError};
pub use set::{ProfileSet, UnknownProfile};
