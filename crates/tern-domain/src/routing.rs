//! The static route table: which carriers may carry a message to a destination, in order
//! of preference.
//!
//! A route names an E.164 prefix (`"+"` matches every destination) and a list of carrier
//! ids; the longest matching prefix wins. The first carrier listed is preferred and
//! further attempts move down the list (the walk is the engine's: `tern-node`'s `network`
//! module, which keeps this order with `learn = false`), so a carrier that errors hands
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

use tern_types::phone::{E164, calling_code};

use crate::network::Candidate;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// `"+"` or `"+"` followed by digits; empty for a `country` route.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// A country (ISO 3166 alpha-2, `"CA"`) instead of a prefix: the numbers the phone
    /// number metadata places there (in shared calling codes like NANP's `+1`, by area
    /// code). It beats a prefix route as long as its calling code (`+1` for CA) and loses
    /// to a longer prefix (`+1416`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
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

    /// What names the route: its prefix, or its country. Paths are learned per key.
    pub fn key(&self) -> &str {
        self.country.as_deref().unwrap_or(&self.prefix)
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
    #[error(
        "route country {0:?} is not a country code with phone numbers (ISO 3166 alpha-2, like \"GB\")"
    )]
    BadCountry(String),
    #[error(
        "a route needs exactly one of prefix and country (got prefix {prefix:?}, country {country:?})"
    )]
    PrefixOrCountry { prefix: String, country: String },
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

/// Validated routes, longest prefix first (country routes last).
#[derive(Debug, Clone, PartialEq)]
pub struct RouteTable {
    routes: Vec<Route>,
    countries: Vec<CountryRoute>,
}

/// A country route: its region, how specific it is (its calling code's length with the
/// `+`) and its place in `routes`.
#[derive(Debug, Clone, PartialEq)]
struct CountryRoute {
    country: String,
    specificity: usize,
    index: usize,
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
        let mut countries = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            match (r.prefix.is_empty(), &r.country) {
                (true, Some(c)) => {
                    let code = calling_code(c).ok_or_else(|| RouteError::BadCountry(c.clone()))?;
                    countries.push(CountryRoute {
                        country: c.clone(),
                        specificity: code.to_string().len() + 1,
                        index: i,
                    });
                }
                (false, None) => {
                    let digits = r
                        .prefix
                        .strip_prefix('+')
                        .ok_or_else(|| RouteError::BadPrefix(r.prefix.clone()))?;
                    if !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 15 {
                        return Err(RouteError::BadPrefix(r.prefix.clone()));
                    }
                }
                _ => {
                    return Err(RouteError::PrefixOrCountry {
                        prefix: r.prefix.clone(),
                        country: r.country.clone().unwrap_or_default(),
                    });
                }
            }
            if r.carriers.is_empty() && !r.deny {
                return Err(RouteError::NoCarrier(r.key().to_owned()));
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
            if !prefixes.insert(r.key()) {
                return Err(RouteError::DuplicatePrefix(r.key().to_owned()));
            }
        }
        // Longest prefix first; country routes (empty prefix) last, found by region.
        let mut order: Vec<usize> = (0..routes.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(routes.get(i).map_or(0, |r| r.prefix.len())));
        let mut slots: Vec<Option<Route>> = routes.into_iter().map(Some).collect();
        let routes: Vec<Route> = order
            .iter()
            .filter_map(|&i| slots.get_mut(i).and_then(Option::take))
            .collect();
        for c in &mut countries {
            c.index = order.iter().position(|&i| i == c.index).unwrap_or(c.index);
        }
        Ok(RouteTable { routes, countries })
    }

    /// Every route, longest prefix first.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route that serves `to` (an E.164 number): the longest matching prefix, or the
    /// route of its country when that is more specific (see [`Route::country`]).
    pub fn route_for(&self, to: &str) -> Option<&Route> {
        let by_prefix = self
            .routes
            .iter()
            .find(|r| !r.prefix.is_empty() && to.starts_with(&r.prefix));
        if self.countries.is_empty() {
            return by_prefix;
        }
        let by_country = E164::from_trusted(to.to_owned())
            .country()
            .and_then(|region| {
                let c = self.countries.iter().find(|c| c.country == region)?;
                Some((c.specificity, self.routes.get(c.index)?))
            });
        match (by_prefix, by_country) {
            (Some(p), Some((spec, c))) if p.prefix.len() <= spec => Some(c),
            (None, Some((_, c))) => Some(c),
            (p, _) => p,
        }
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

    /// The carriers of the route `to` takes, most preferred first.
    fn carriers<'a>(t: &'a RouteTable, to: &str) -> Option<&'a [String]> {
        t.route_for(to).map(|r| r.carriers.as_slice())
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
    fn a_country_route_beats_its_calling_code_and_loses_to_longer_prefixes() {
        let country = |c: &str, carriers: &[&str]| Route {
            country: Some(c.into()),
            ..route("", carriers)
        };
        let t = RouteTable::new(
            vec![
                route("+", &["a"]),
                route("+1", &["b"]),
                country("CA", &["c"]),
                route("+1416555", &["a"]),
                country("GB", &["b"]),
            ],
            &["a", "b", "c"],
        )
        .unwrap();
        let carrier = |to: &str| t.route_for(to).map(|r| (r.key(), r.carriers[0].as_str()));
        assert_eq!(carrier("+14155552671"), Some(("+1", "b"))); // US: the +1 route
        assert_eq!(carrier("+14169670123"), Some(("CA", "c"))); // Toronto: Canada
        assert_eq!(carrier("+14165551234"), Some(("+1416555", "a"))); // a longer prefix wins
        assert_eq!(carrier("+442079460958"), Some(("GB", "b")));
        assert_eq!(carrier("+33612345678"), Some(("+", "a")));
        // Paths are learned per key, and the table shows the country.
        assert!(
            t.routes()
                .iter()
                .any(|r| r.key() == "CA" && r.prefix.is_empty())
        );

        for (bad, want) in [
            (country("ZZ", &["a"]), "not a country code"),
            (
                Route {
                    country: Some("GB".into()),
                    ..route("+44", &["a"])
                },
                "exactly one of prefix and country",
            ),
            (route("", &["a"]), "exactly one of prefix and country"),
            (route("44", &["a"]), "must be"),
        ] {
            let err = RouteTable::new(vec![bad], &["a"]).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
        let twice = RouteTable::new(vec![country("GB", &["a"]), country("GB", &["a"])], &["a"]);
        assert!(matches!(twice, Err(RouteError::DuplicatePrefix(_))));
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
    fn the_longest_prefix_wins() {
        let t = RouteTable::new(
            vec![
                route("+", &["a"]),
                route("+44", &["b", "a"]),
                route("+447", &["c", "b"]),
            ],
            &["a", "b", "c"],
        )
        .unwrap();
        assert_eq!(carriers(&t, "+15551234567").unwrap(), ["a"]);
        assert_eq!(carriers(&t, "+442071234567").unwrap(), ["b", "a"]);
        assert_eq!(carriers(&t, "+447700900123").unwrap(), ["c", "b"]);
    }

    #[test]
    fn without_routes_every_carrier_serves_everything_in_order() {
        let t = RouteTable::new(vec![], &["x", "y"]).unwrap();
        assert_eq!(carriers(&t, "+33612345678").unwrap(), ["x", "y"]);
    }

    #[test]
    fn a_destination_no_route_covers_has_no_carrier() {
        let t = RouteTable::new(vec![route("+1", &["a"])], &["a"]).unwrap();
        assert_eq!(carriers(&t, "+447700900123"), None);
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
        /// Whatever the table, the carriers are those of the longest matching prefix.
        #[test]
        fn the_route_taken_is_the_longest_matching_one(
            prefixes in proptest::collection::hash_set("\\+[0-9]{0,4}", 1..8),
            to in "\\+[0-9]{6,12}",
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
            prop_assert_eq!(carriers(&t, &to), best.map(|r| r.carriers.as_slice()));
        }
    }
}
