//! The static route table: which carriers may carry a message to a destination, in order
//! of preference.
//!
//! A route names an E.164 prefix (`"+"` matches every destination) and a list of carrier
//! ids; the longest matching prefix wins. The first carrier listed is preferred and each
//! further attempt moves to the next one, wrapping around, so a carrier that errors hands
//! its traffic to the next without operator action. The Super Network replaces the fixed
//! order with a learned ranking; this table stays as its operator constraints.

use std::collections::HashSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `"+"` or `"+"` followed by digits.
    pub prefix: String,
    /// Carrier ids, most preferred first.
    pub carriers: Vec<String>,
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
}

/// Validated routes, longest prefix first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Checks every route against the declared carriers. With no routes at all, one route
    /// `"+"` over every carrier in declaration order stands in, so a config that only
    /// declares carriers works.
    pub fn new(routes: Vec<Route>, carriers: &[&str]) -> Result<RouteTable, RouteError> {
        let routes = if routes.is_empty() {
            vec![Route {
                prefix: "+".into(),
                carriers: carriers.iter().map(|c| (*c).to_owned()).collect(),
            }]
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
            if r.carriers.is_empty() {
                return Err(RouteError::NoCarrier(r.prefix.clone()));
            }
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
        Route {
            prefix: prefix.into(),
            carriers: carriers.iter().map(|c| (*c).to_owned()).collect(),
        }
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
