//! Roles from client certificates: a verified certificate's URI SANs (SPIFFE ids, say) are
//! mapped to one role by rules such as `spiffe://example.org/ns/wfm/sa/ip=ip` or
//! `spiffe://example.org/ns/wfm/sa/gateway-*=gateway`.
//!
//! A rule's pattern is a whole URI, or a prefix ending in `*`. For each URI SAN in the
//! certificate's order, an exact rule wins over prefix rules and a longer prefix over a
//! shorter one; the first URI that any rule matches gives the certificate its role. A
//! certificate that none matches has no role: it is authenticated, and may make only the
//! calls open to every caller.

use std::fmt;

use rustls_pki_types::CertificateDer;

use crate::TlsError;

/// What a caller of the manager may do, by its client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// An Interaction Processor: creates, updates and ends sessions.
    Ip,
    /// An edge gateway: attaches and binds.
    Gateway,
    /// Operators and their tools: read sessions.
    Ops,
    /// Another manager replica forwarding a call: may make any call.
    Peer,
}

impl Role {
    /// Every role, in the order the docs list them.
    pub const ALL: [Role; 4] = [Role::Ip, Role::Gateway, Role::Ops, Role::Peer];

    /// The role's name in rules and messages.
    pub fn name(self) -> &'static str {
        match self {
            Role::Ip => "ip",
            Role::Gateway => "gateway",
            Role::Ops => "ops",
            Role::Peer => "peer",
        }
    }

    /// The role named `name`.
    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.name() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Prefix(String),
}

/// The URI-SAN → role rules, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleMap {
    rules: Vec<(Pattern, Role)>,
}

impl RoleMap {
    /// Parses rules of the form `<uri>=<role>` or `<uri prefix>*=<role>`.
    pub fn parse<S: AsRef<str>>(rules: &[S]) -> Result<Self, TlsError> {
        let mut map = RoleMap::default();
        for rule in rules {
            let rule = rule.as_ref().trim();
            if rule.is_empty() {
                continue;
            }
            let invalid = |problem: &str| TlsError::Role {
                rule: rule.to_string(),
                problem: problem.to_string(),
            };
            // Roles never contain `=`; URIs may.
            let (pattern, role) = rule
                .rsplit_once('=')
                .ok_or_else(|| invalid("expected <uri or uri-prefix*>=<role>"))?;
            let role = Role::from_name(role.trim())
                .ok_or_else(|| invalid("the role must be one of ip, gateway, ops, peer"))?;
            let pattern = pattern.trim();
            if pattern.is_empty() || pattern == "*" {
                return Err(invalid("the URI (or its prefix) is empty"));
            }
            if pattern[..pattern.len() - 1].contains('*') {
                return Err(invalid("`*` may only end the pattern"));
            }
            let pattern = match pattern.strip_suffix('*') {
                Some(prefix) => Pattern::Prefix(prefix.to_string()),
                None => Pattern::Exact(pattern.to_string()),
            };
            map.rules.push((pattern, role));
        }
        Ok(map)
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The role of one URI: its exact rule, else its longest matching prefix.
    fn role_of_uri(&self, uri: &str) -> Option<Role> {
        let exact = self.rules.iter().find_map(|(pattern, role)| match pattern {
            Pattern::Exact(e) if e == uri => Some(*role),
            _ => None,
        });
        exact.or_else(|| {
            self.rules
                .iter()
                .filter_map(|(pattern, role)| match pattern {
                    Pattern::Prefix(p) if uri.starts_with(p.as_str()) => Some((p.len(), *role)),
                    _ => None,
                })
                .max_by_key(|(len, _)| *len)
                .map(|(_, role)| role)
        })
    }

    /// The identity of a verified certificate with URI SANs `uris`.
    pub fn identity(&self, uris: Vec<String>) -> PeerIdentity {
        let matched = uris
            .iter()
            .find_map(|uri| self.role_of_uri(uri).map(|role| (uri.clone(), role)));
        PeerIdentity { uris, matched }
    }
}

/// The URI SANs of a DER certificate; none if it cannot be parsed.
pub fn uri_sans(cert: &CertificateDer<'_>) -> Vec<String> {
    match webpki::EndEntityCert::try_from(cert) {
        Ok(parsed) => parsed.valid_uri_names().map(str::to_string).collect(),
        Err(_) => Vec::new(),
    }
}

/// Who a verified client certificate names, and its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Every URI SAN of the certificate.
    pub uris: Vec<String>,
    /// The URI that gave the role, and the role.
    pub matched: Option<(String, Role)>,
}

impl PeerIdentity {
    /// The role, if a rule matched.
    pub fn role(&self) -> Option<Role> {
        self.matched.as_ref().map(|(_, role)| *role)
    }

    /// The certificate as an error message names it, with its role or lack of one:
    /// "the client certificate spiffe://a/b has `gateway`".
    pub fn describe(&self) -> String {
        match (&self.matched, self.uris.first()) {
            (Some((uri, role)), _) => format!("the client certificate {uri} has `{role}`"),
            (None, Some(uri)) => format!("the client certificate {uri} has no role"),
            (None, None) => "the client certificate has no URI SAN, so no role".to_string(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn uris(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn exact_rules_win_over_prefixes_and_longer_prefixes_over_shorter() {
        let map = RoleMap::parse(&[
            "spiffe://wfm/*=ops",
            "spiffe://wfm/gw/*=gateway",
            "spiffe://wfm/gw/special=ip",
        ])
        .unwrap();
        assert_eq!(
            map.identity(uris(&["spiffe://wfm/gw/1"])).role(),
            Some(Role::Gateway)
        );
        assert_eq!(
            map.identity(uris(&["spiffe://wfm/gw/special"])).role(),
            Some(Role::Ip)
        );
        assert_eq!(
            map.identity(uris(&["spiffe://wfm/x"])).role(),
            Some(Role::Ops)
        );
        let none = map.identity(uris(&["spiffe://other/x"]));
        assert_eq!(none.role(), None);
        assert_eq!(
            none.describe(),
            "the client certificate spiffe://other/x has no role"
        );
        // The first URI that matches decides.
        let two = map.identity(uris(&["https://nope", "spiffe://wfm/gw/2"]));
        assert_eq!(
            two.describe(),
            "the client certificate spiffe://wfm/gw/2 has `gateway`"
        );
    }

    #[test]
    fn malformed_rules_are_refused_with_the_reason() {
        for (rule, problem) in [
            ("spiffe://a", "expected"),
            ("spiffe://a=admin", "one of ip, gateway, ops, peer"),
            ("=ip", "empty"),
            ("*=ip", "empty"),
            ("spiffe://*/x=ip", "only end"),
        ] {
            let error = RoleMap::parse(&[rule]).unwrap_err().to_string();
            assert!(error.contains(problem), "{rule}: {error}");
        }
        assert!(RoleMap::parse(&["", " "]).unwrap().is_empty());
    }
}
