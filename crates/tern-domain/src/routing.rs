//! The static route table: which carriers may carry a message to a destination, in order
//! of preference.
//!
//! A route names an E.164 prefix (`"+"` matches every destination) and a list of carrier
//! ids; the longest matching prefix wins. The first carrier listed is preferred and each
//! further attempt moves to the next one, wrapping around, so a carrier that errors hands
//! its traffic to the next without operator action. The Super Network replaces the fixed
//! order with a learned ranking; this table stays as its operator constraints: per
//! carrier a `weight` (preference between carriers of equal quality and cost, higher
//! first), a `cost` per message (cheaper first among equal quality), a `max_share` (the
//! largest share of the route's messages it may be first for) and a `max_mps` (messages
//! per second on this route; beyond it traffic spills to the next carrier); and `deny`,
//! which refuses every message to the destination (21408), as a geographic permission.
//!
//! ```toml
//! [[route]]
//! prefix = "+44"
//! carriers = ["a", "b", "c"]
//! weight = { b = 2 }
//! cost = { a = 0.0045, b = 0.0040 }
//! max_share = { a = 0.8 }
//! max_mps = { c = 20 }
//!
//! [[route]]
//! prefix = "+98"
//! deny = true
//! ```

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::network::Candidate;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// `"+"` or `"+"` followed by digits.
    pub prefix: String,
    /// Carrier ids, most preferred first.
    #[serde(default)]
    pub carriers: Vec<String>,
    /// Preference between carriers of equal quality and cost, higher first (default 1).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weight: BTreeMap<String, u32>,
    /// Cost of one message on a carrier (default 0), in the operator's currency.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cost: BTreeMap<String, f64>,
    /// The largest share (0–1] of the route's messages a carrier may be first for.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub max_share: BTreeMap<String, f64>,
    /// Messages per second a carrier may take on this route; beyond it, the next one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub max_mps: BTreeMap<String, f64>,
    /// Refuse every message to this destination (error 21408).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deny: bool,
}

impl Route {
    /// A route over `carriers` in order, without constraints.
    pub fn new(prefix: impl Into<String>, carriers: Vec<String>) -> Route {
        Route {
            prefix: prefix.into(),
            carriers,
            ..Route::default()
        }
    }

    /// The route's carriers as ranking candidates, in listed order.
    pub fn candidates(&self) -> Vec<Candidate> {
        self.carriers
            .iter()
            .map(|c| Candidate {
                carrier: c.clone(),
                weight: self.weight.get(c).copied().unwrap_or(1),
                // Validated finite and ≥ 0; micro-units keep ranking exact.
                cost_micros: self.cost.get(c).map_or(0, |v| (v * 1e6).round() as u64),
                max_share: self.max_share.get(c).copied(),
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("route prefix {0:?} must be \"+\" or \"+\" followed by digits")]
    BadPrefix(String),
    #[error("route {0:?} lists no carrier")]
    NoCarrier(String),
    #[error("route {prefix:?} names carrier {carrier:?}, which is not declared")]
    UnknownCarrier { prefix: String, carrier: String },
    #[error("route {prefix:?} lists carrier {carrier:?} twice")]
    DuplicateCarrier { prefix: String, carrier: String },
    #[error("two routes have the prefix {0:?}")]
    DuplicatePrefix(String),
    #[error("route {prefix:?}: {key} of {carrier:?} {problem}")]
    BadTerm {
        prefix: String,
        key: &'static str,
        carrier: String,
        problem: &'static str,
    },
}

/// Checks a route's per-carrier terms: each names a carrier of the route, with a value
/// that means something.
fn check_terms(r: &Route) -> Result<(), RouteError> {
    let bad = |key, carrier: &String, problem| RouteError::BadTerm {
        prefix: r.prefix.clone(),
        key,
        carrier: carrier.clone(),
        problem,
    };
    let listed = |key, carrier: &String| {
        if r.carriers.contains(carrier) {
            Ok(())
        } else {
            Err(bad(key, carrier, "is not one of the route's carriers"))
        }
    };
    for (c, w) in &r.weight {
        listed("weight", c)?;
        if *w == 0 {
            return Err(bad("weight", c, "must be at least 1"));
        }
    }
    for (c, v) in &r.cost {
        listed("cost", c)?;
        if !v.is_finite() || *v < 0.0 || *v > 1e6 {
            return Err(bad("cost", c, "must be a number from 0 to 1000000"));
        }
    }
    for (c, v) in &r.max_share {
        listed("max_share", c)?;
        if !(v.is_finite() && *v > 0.0 && *v <= 1.0) {
            return Err(bad("max_share", c, "must be above 0 and at most 1"));
        }
    }
    for (c, v) in &r.max_mps {
        listed("max_mps", c)?;
        if !(v.is_finite() && *v > 0.0) {
            return Err(bad("max_mps", c, "must be a positive number"));
        }
    }
    Ok(())
}

/// Validated routes, longest prefix first.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Checks every route against the declared carriers. With no routes at all, one route
    /// `"+"` over every carrier in declaration order stands in, so a config that only
    /// declares carriers works.
    pub fn new(routes: Vec<Route>, carriers: &[&str]) -> Result<RouteTable, RouteError> {
        let routes = if routes.is_empty() {
            vec![Route::new(
                "+",
                carriers.iter().map(|c| (*c).to_owned()).collect(),
            )]
        } else {
            routes
        };
        let known: HashSet<&str> = carriers.iter().copied().collect();
        let mut prefixes = HashSet::new();
        for r in &routes {
            let digits = r
                .prefix
                .strip_prefix('+')
                .ok_or_else(|| RouteError::BadPrefix(r.prefix.clone()))?;
            if !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 15 {
                return Err(RouteError::BadPrefix(r.prefix.clone()));
            }
            if r.carriers.is_empty() && !r.deny {
                return Err(RouteError::NoCarrier(r.prefix.clone()));
            }
            check_terms(r)?;
            let mut seen = HashSet::new();
            for c in &r.carriers {
                if !known.contains(c.as_str()) {
                    return Err(RouteError::UnknownCarrier {
                        prefix: r.prefix.clone(),
                        carrier: c.clone(),
                    });
                }
                if !seen.insert(c.as_str()) {
                    return Err(RouteError::DuplicateCarrier {
                        prefix: r.prefix.clone(),
                        carrier: c.clone(),
                    });
                }
            }
            if !prefixes.insert(r.prefix.as_str()) {
                return Err(RouteError::DuplicatePrefix(r.prefix.clone()));
            }
        }
        let mut routes = routes;
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Ok(RouteTable { routes })
    }

    /// Every route, longest prefix first.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route that serves `to` (an E.164 number): the longest matching prefix.
    pub fn route_for(&self, to: &str) -> Option<&Route> {
        self.routes.iter().find(|r| to.starts_with(&r.prefix))
    }

    /// The carriers for `to`, most preferred first; `None` when no route matches.
    pub fn carriers_for(&self, to: &str) -> Option<&[String]> {
        self.route_for(to).map(|r| r.carriers.as_slice())
    }

    /// The carrier for attempt number `attempt` (0 for the first) of a message to `to`:
    /// the route's carriers in order, wrapping around.
    pub fn pick(&self, to: &str, attempt: u32) -> Option<&str> {
        let carriers = self.carriers_for(to)?;
        let i = attempt as usize % carriers.len().max(1);
        carriers.get(i).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn route(prefix: &str, carriers: &[&str]) -> Route {
        Route::new(prefix, carriers.iter().map(|c| (*c).to_owned()).collect())
    }

    #[test]
    fn terms_name_route_carriers_with_meaningful_values() {
        let ids = ["a", "b"];
        let with = |f: &dyn Fn(&mut Route)| {
            let mut r = route("+44", &["a", "b"]);
            f(&mut r);
            RouteTable::new(vec![r], &ids)
        };
        assert!(
            with(&|r| {
                r.weight.insert("b".into(), 2);
                r.cost.insert("a".into(), 0.004);
                r.max_share.insert("a".into(), 0.5);
                r.max_mps.insert("b".into(), 20.0);
            })
            .is_ok()
        );
        let err = with(&|r| {
            r.cost.insert("c".into(), 0.1);
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "route \"+44\": cost of \"c\" is not one of the route's carriers"
        );
        for bad in [
            &(|r: &mut Route| {
                r.weight.insert("a".into(), 0);
            }) as &dyn Fn(&mut Route),
            &|r| {
                r.cost.insert("a".into(), f64::NAN);
            },
            &|r| {
                r.cost.insert("a".into(), -1.0);
            },
            &|r| {
                r.max_share.insert("a".into(), 1.5);
            },
            &|r| {
                r.max_share.insert("a".into(), 0.0);
            },
            &|r| {
                r.max_mps.insert("a".into(), f64::INFINITY);
            },
        ] {
            assert!(matches!(with(bad), Err(RouteError::BadTerm { .. })));
        }
        // A denied destination needs no carrier; any other route does.
        let mut denied = route("+98", &[]);
        denied.deny = true;
        assert!(RouteTable::new(vec![denied], &ids).is_ok());
        assert!(RouteTable::new(vec![route("+98", &[])], &ids).is_err());
    }

    #[test]
    fn candidates_carry_the_terms_in_listed_order() {
        let mut r = route("+44", &["a", "b"]);
        r.weight.insert("b".into(), 3);
        r.cost.insert("a".into(), 0.0045);
        r.max_share.insert("b".into(), 0.25);
        let c = r.candidates();
        assert_eq!(
            (
                c[0].carrier.as_str(),
                c[0].weight,
                c[0].cost_micros,
                c[0].max_share
            ),
            ("a", 1, 4_500, None)
        );
        assert_eq!(
            (
                c[1].carrier.as_str(),
                c[1].weight,
                c[1].cost_micros,
                c[1].max_share
            ),
            ("b", 3, 0, Some(0.25))
        );
    }

    #[test]
    fn routes_read_from_toml_with_terms() {
        #[derive(Deserialize)]
        struct F {
            route: Vec<Route>,
        }
        let f: F = toml::from_str(
            r#"
            [[route]]
            prefix = "+44"
            carriers = ["a", "b"]
            weight = { b = 2 }
            max_mps = { a = 20 }

            [[route]]
            prefix = "+98"
            deny = true
            "#,
        )
        .unwrap();
        assert_eq!(f.route[0].weight.get("b"), Some(&2));
        assert_eq!(f.route[0].max_mps.get("a"), Some(&20.0));
        assert!(f.route[1].deny && f.route[1].carriers.is_empty());
    }

    #[test]
    fn the_longest_prefix_wins_and_attempts_walk_the_list() {
        let t = RouteTable::new(
            vec![
                route("+", &["a"]),
                route("+44", &["b", "a"]),
                route("+447", &["c", "b"]),
            ],
            &["a", "b", "c"],
        )
        .unwrap();
        assert_eq!(t.pick("+15551234567", 0), Some("a"));
        assert_eq!(t.pick("+15551234567", 3), Some("a"));
        assert_eq!(t.pick("+442071234567", 0), Some("b"));
        assert_eq!(t.pick("+442071234567", 1), Some("a"));
        assert_eq!(t.pick("+447700900123", 0), Some("c"));
        assert_eq!(t.pick("+447700900123", 1), Some("b"));
        assert_eq!(t.pick("+447700900123", 2), Some("c"));
    }

    #[test]
    fn without_routes_every_carrier_serves_everything_in_order() {
        let t = RouteTable::new(vec![], &["x", "y"]).unwrap();
        assert_eq!(t.carriers_for("+33612345678").unwrap(), ["x", "y"]);
    }

    #[test]
    fn a_destination_no_route_covers_has_no_carrier() {
        let t = RouteTable::new(vec![route("+1", &["a"])], &["a"]).unwrap();
        assert_eq!(t.pick("+447700900123", 0), None);
    }

    #[test]
    fn bad_tables_are_refused_with_the_reason() {
        let known = ["a", "b"];
        let err = |routes| RouteTable::new(routes, &known).unwrap_err();
        assert_eq!(
            err(vec![route("44", &["a"])]),
            RouteError::BadPrefix("44".into())
        );
        assert_eq!(
            err(vec![route("+4x", &["a"])]),
            RouteError::BadPrefix("+4x".into())
        );
        assert_eq!(
            err(vec![route("+1", &[])]),
            RouteError::NoCarrier("+1".into())
        );
        assert!(matches!(
            err(vec![route("+1", &["zz"])]),
            RouteError::UnknownCarrier { .. }
        ));
        assert!(matches!(
            err(vec![route("+1", &["a", "a"])]),
            RouteError::DuplicateCarrier { .. }
        ));
        assert_eq!(
            err(vec![route("+1", &["a"]), route("+1", &["b"])]),
            RouteError::DuplicatePrefix("+1".into())
        );
    }

    proptest! {
        /// Whatever the table, the carrier picked is listed by the longest matching prefix.
        #[test]
        fn the_pick_comes_from_the_longest_matching_route(
            prefixes in proptest::collection::hash_set("\\+[0-9]{0,4}", 1..8),
            to in "\\+[0-9]{6,12}",
            attempt in 0u32..10,
        ) {
            let routes: Vec<Route> = prefixes
                .iter()
                .enumerate()
                .map(|(i, p)| route(p, if i % 2 == 0 { &["a", "b"] } else { &["b"] }))
                .collect();
            let t = RouteTable::new(routes.clone(), &["a", "b"]).unwrap();
            let best = routes
                .iter()
                .filter(|r| to.starts_with(&r.prefix))
                .max_by_key(|r| r.prefix.len());
            match best {
                None => prop_assert_eq!(t.pick(&to, attempt), None),
                Some(r) => {
                    let c = t.pick(&to, attempt).unwrap();
                    prop_assert_eq!(c, r.carriers[attempt as usize % r.carriers.len()].as_str());
                }
            }
        }
    }
}
