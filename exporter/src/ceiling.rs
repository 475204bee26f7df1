//! Export ceilings: what an administrator lets one recipient role (insurer, researcher,
//! government) ask for. A policy is checked against its requester's ceiling before any data is
//! touched, so that a recipient cannot raise the detail or lower the anonymity it receives by
//! writing its own policy. The server keeps one ceiling per hospital and role, each bounding
//! that hospital's patients only; this crate checks one ceiling at a time.

use crate::error::ExportError;
use crate::policy::{Dataset, DateDetail, ExportPolicy, PseudonymScope, ZipGeneralization};
use serde::{Deserialize, Serialize};

/// The most detail and the least anonymity any export requested by one role may have.
///
/// Every field is required in TOML except `min_l`, whose absence means no l-diversity is
/// required: a ceiling an administrator wrote should say everything it allows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportCeiling {
    /// The data sets the role may request (at least one).
    pub datasets: Vec<Dataset>,
    /// The smallest k a policy may ask for (at least 2).
    pub min_k: usize,
    /// If set, a policy must require l-diversity with at least this l.
    #[serde(default)]
    pub min_l: Option<usize>,
    /// The largest share of persons a policy may allow to be suppressed, from 0 to 1.
    pub max_suppression: f64,
    /// The fewest years one exported birth value may cover: an age band of width w covers w
    /// years, a year of birth covers 1.
    pub min_birth_granularity_years: u32,
    /// Whether the first three digits of the postal code may be exported.
    pub allow_zip3: bool,
    /// Whether sex may be exported.
    pub allow_sex: bool,
    /// The finest event dates a policy may ask for.
    pub finest_dates: DateDetail,
    /// Whether pseudonyms may be kept across the exports of one recipient (else every export
    /// gets a key of its own).
    pub allow_per_recipient_pseudonyms: bool,
}

/// The largest k a policy accepts, so the largest minimum a ceiling can ask for.
const MAX_K: usize = 1000;
/// The widest age band a policy accepts, so the most years a ceiling can ask a birth value to
/// cover.
const MAX_BIRTH_GRANULARITY_YEARS: u32 = 50;

impl Default for ExportCeiling {
    /// A conservative ceiling: every data set, k of at least 5, at most 5% suppressed, age bands
    /// of at least 5 years, dates to the month, and no pseudonyms shared between exports.
    fn default() -> Self {
        ExportCeiling {
            datasets: vec![
                Dataset::Patients,
                Dataset::Observations,
                Dataset::Conditions,
                Dataset::Medications,
            ],
            min_k: 5,
            min_l: None,
            max_suppression: 0.05,
            min_birth_granularity_years: 5,
            allow_zip3: true,
            allow_sex: true,
            finest_dates: DateDetail::Month,
            allow_per_recipient_pseudonyms: false,
        }
    }
}

impl ExportCeiling {
    /// Parses and validates a TOML ceiling.
    pub fn from_toml(text: &str) -> Result<Self, ExportError> {
        let ceiling: ExportCeiling = toml::from_str(text).map_err(|error| {
            ExportError::InvalidPolicy(format!("export ceiling: {}", error.message()))
        })?;
        ceiling.validate()?;
        Ok(ceiling)
    }

    /// Checks that the ceiling is one some policy can meet; the message names the field at
    /// fault.
    pub fn validate(&self) -> Result<(), ExportError> {
        let invalid = |message: String| {
            Err(ExportError::InvalidPolicy(format!(
                "export ceiling: {message}"
            )))
        };
        if self.datasets.is_empty() {
            return invalid("datasets is empty: the role could request nothing".into());
        }
        if let Some(repeated) = self
            .datasets
            .iter()
            .enumerate()
            .find_map(|(index, dataset)| {
                self.datasets[..index].contains(dataset).then_some(dataset)
            })
        {
            return invalid(format!("datasets lists {repeated} twice"));
        }
        if !(2..=MAX_K).contains(&self.min_k) {
            return invalid(format!(
                "min_k must be between 2 and {MAX_K}, not {}",
                self.min_k
            ));
        }
        if let Some(min_l) = self.min_l {
            if !(2..=MAX_K).contains(&min_l) {
                return invalid(format!("min_l must be between 2 and {MAX_K}, not {min_l}"));
            }
            if self.datasets.contains(&Dataset::Patients) {
                return invalid(
                    "min_l needs events, which the patients data set has none of: remove \
                     patients from datasets or min_l"
                        .into(),
                );
            }
        }
        if !(0.0..=1.0).contains(&self.max_suppression) {
            return invalid(format!(
                "max_suppression must be between 0 and 1, not {}",
                self.max_suppression
            ));
        }
        if !(1..=MAX_BIRTH_GRANULARITY_YEARS).contains(&self.min_birth_granularity_years) {
            return invalid(format!(
                "min_birth_granularity_years must be between 1 and \
                 {MAX_BIRTH_GRANULARITY_YEARS}, not {}",
                self.min_birth_granularity_years
            ));
        }
        Ok(())
    }

    /// Checks the policy on its own, then against every rule of the ceiling. All the rules the
    /// policy breaks are reported together, each naming the field, what the policy asks for
    /// and what the ceiling allows, so that a requester can fix them in one go.
    pub fn check(&self, policy: &ExportPolicy) -> Result<(), ExportError> {
        self.validate()?;
        policy.validate()?;
        let mut violations = Vec::new();
        if !self.datasets.contains(&policy.dataset) {
            let allowed: Vec<String> = self.datasets.iter().map(Dataset::to_string).collect();
            violations.push(format!(
                "dataset {} is not among the ceiling's data sets ({})",
                policy.dataset,
                allowed.join(", ")
            ));
        }
        if policy.k < self.min_k {
            violations.push(format!(
                "k = {} is below the ceiling's minimum of {}",
                policy.k, self.min_k
            ));
        }
        if let Some(min_l) = self.min_l {
            match policy.l {
                None => violations.push(format!(
                    "l is not set, but the ceiling requires l of at least {min_l}"
                )),
                Some(l) if l < min_l => {
                    violations.push(format!("l = {l} is below the ceiling's minimum of {min_l}"))
                }
                Some(_) => {}
            }
        }
        if policy.max_suppression > self.max_suppression {
            violations.push(format!(
                "max_suppression = {} is above the ceiling's maximum of {}",
                policy.max_suppression, self.max_suppression
            ));
        }
        let birth_years = policy.birth_granularity_years();
        if birth_years < self.min_birth_granularity_years {
            violations.push(format!(
                "birth covers {birth_years} year(s) per value, fewer than the ceiling's minimum \
                 of {} (min_birth_granularity_years)",
                self.min_birth_granularity_years
            ));
        }
        if policy.zip == ZipGeneralization::Zip3 && !self.allow_zip3 {
            violations.push(
                "zip = zip3 is not allowed by the ceiling (allow_zip3 = false): use remove".into(),
            );
        }
        if policy.include_sex && !self.allow_sex {
            violations.push(
                "include_sex = true is not allowed by the ceiling (allow_sex = false)".into(),
            );
        }
        let date_detail = policy.date_detail();
        if date_detail > self.finest_dates {
            violations.push(format!(
                "dates to the {date_detail} are finer than the ceiling's finest, the {} \
                 (finest_dates)",
                self.finest_dates
            ));
        }
        if let PseudonymScope::PerRecipient { recipient } = &policy.pseudonym_scope {
            if !self.allow_per_recipient_pseudonyms {
                violations.push(format!(
                    "pseudonym_scope per_recipient ({recipient:?}) is not allowed by the ceiling \
                     (allow_per_recipient_pseudonyms = false): use per_export"
                ));
            }
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(ExportError::AboveCeiling(violations.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{BirthGeneralization, DateGeneralization};

    fn typical_policy() -> ExportPolicy {
        ExportPolicy {
            dataset: Dataset::Conditions,
            columns: Vec::new(),
            birth: BirthGeneralization::AgeBand { width: 10 },
            zip: ZipGeneralization::Zip3,
            include_sex: true,
            dates: DateGeneralization::Month,
            sensitive: Some("code".into()),
            k: 5,
            l: Some(2),
            max_suppression: 0.05,
            pseudonym_scope: PseudonymScope::PerExport,
        }
    }

    fn above_ceiling(ceiling: &ExportCeiling, policy: &ExportPolicy) -> String {
        match ceiling.check(policy) {
            Err(ExportError::AboveCeiling(message)) => message,
            other => panic!("expected AboveCeiling, got {other:?}"),
        }
    }

    #[test]
    fn the_default_ceiling_accepts_a_typical_policy() {
        let ceiling = ExportCeiling::default();
        ceiling.validate().unwrap();
        ceiling.check(&typical_policy()).unwrap();
        let coarser = ExportPolicy {
            birth: BirthGeneralization::AgeBand { width: 20 },
            dates: DateGeneralization::Year,
            k: 10,
            max_suppression: 0.0,
            ..typical_policy()
        };
        ceiling.check(&coarser).unwrap();
    }

    #[test]
    fn each_rule_broken_alone_is_named() {
        let strict = ExportCeiling {
            datasets: vec![Dataset::Conditions, Dataset::Medications],
            min_k: 5,
            min_l: Some(2),
            max_suppression: 0.05,
            min_birth_granularity_years: 10,
            allow_zip3: false,
            allow_sex: false,
            finest_dates: DateDetail::Month,
            allow_per_recipient_pseudonyms: false,
        };
        let within = ExportPolicy {
            zip: ZipGeneralization::Remove,
            include_sex: false,
            ..typical_policy()
        };
        strict.check(&within).unwrap();
        let cases: Vec<(ExportPolicy, &str)> = vec![
            (
                ExportPolicy {
                    dataset: Dataset::Observations,
                    ..within.clone()
                },
                "dataset observations is not among the ceiling's data sets (conditions, \
                 medications)",
            ),
            (
                ExportPolicy {
                    k: 3,
                    ..within.clone()
                },
                "k = 3 is below the ceiling's minimum of 5",
            ),
            (
                ExportPolicy {
                    l: None,
                    ..within.clone()
                },
                "l is not set, but the ceiling requires l of at least 2",
            ),
            (
                ExportPolicy {
                    max_suppression: 0.1,
                    ..within.clone()
                },
                "max_suppression = 0.1 is above the ceiling's maximum of 0.05",
            ),
            (
                ExportPolicy {
                    birth: BirthGeneralization::BirthYear,
                    ..within.clone()
                },
                "birth covers 1 year(s) per value, fewer than the ceiling's minimum of 10",
            ),
            (
                ExportPolicy {
                    zip: ZipGeneralization::Zip3,
                    ..within.clone()
                },
                "zip = zip3 is not allowed",
            ),
            (
                ExportPolicy {
                    include_sex: true,
                    ..within.clone()
                },
                "include_sex = true is not allowed",
            ),
            (
                ExportPolicy {
                    dates: DateGeneralization::ShiftPerPerson { max_days: 30 },
                    ..within.clone()
                },
                "dates to the day are finer than the ceiling's finest, the month",
            ),
            (
                ExportPolicy {
                    pseudonym_scope: PseudonymScope::PerRecipient {
                        recipient: "insurer-a".into(),
                    },
                    ..within.clone()
                },
                "pseudonym_scope per_recipient (\"insurer-a\") is not allowed",
            ),
        ];
        for (policy, expected) in cases {
            let message = above_ceiling(&strict, &policy);
            assert!(
                message.contains(expected),
                "{message:?} should say {expected:?}"
            );
            assert!(
                !message.contains("; "),
                "only one rule is broken: {message}"
            );
        }
    }

    #[test]
    fn an_l_below_the_minimum_is_named() {
        let ceiling = ExportCeiling {
            datasets: vec![Dataset::Conditions],
            min_l: Some(3),
            ..ExportCeiling::default()
        };
        assert_eq!(
            above_ceiling(&ceiling, &typical_policy()),
            "l = 2 is below the ceiling's minimum of 3"
        );
    }

    #[test]
    fn every_broken_rule_is_reported_at_once() {
        let policy = ExportPolicy {
            k: 2,
            l: None,
            sensitive: None,
            birth: BirthGeneralization::BirthYear,
            ..typical_policy()
        };
        let message = above_ceiling(&ExportCeiling::default(), &policy);
        assert!(message.contains("k = 2"), "{message}");
        assert!(message.contains("birth covers 1 year"), "{message}");
    }

    #[test]
    fn an_invalid_policy_is_refused_before_the_ceiling_is_consulted() {
        let policy = ExportPolicy {
            k: 1,
            ..typical_policy()
        };
        assert!(matches!(
            ExportCeiling::default().check(&policy),
            Err(ExportError::InvalidPolicy(message)) if message.contains("k must be")
        ));
    }

    #[test]
    fn a_malformed_ceiling_is_refused() {
        let cases = [
            (
                ExportCeiling {
                    datasets: Vec::new(),
                    ..ExportCeiling::default()
                },
                "datasets is empty",
            ),
            (
                ExportCeiling {
                    datasets: vec![Dataset::Conditions, Dataset::Conditions],
                    ..ExportCeiling::default()
                },
                "datasets lists conditions twice",
            ),
            (
                ExportCeiling {
                    min_k: 1,
                    ..ExportCeiling::default()
                },
                "min_k must be between 2 and 1000, not 1",
            ),
            (
                ExportCeiling {
                    min_l: Some(1),
                    datasets: vec![Dataset::Conditions],
                    ..ExportCeiling::default()
                },
                "min_l must be between 2 and 1000, not 1",
            ),
            (
                ExportCeiling {
                    min_l: Some(2),
                    ..ExportCeiling::default()
                },
                "min_l needs events",
            ),
            (
                ExportCeiling {
                    max_suppression: 1.5,
                    ..ExportCeiling::default()
                },
                "max_suppression must be between 0 and 1",
            ),
            (
                ExportCeiling {
                    max_suppression: f64::NAN,
                    ..ExportCeiling::default()
                },
                "max_suppression must be between 0 and 1",
            ),
            (
                ExportCeiling {
                    min_birth_granularity_years: 0,
                    ..ExportCeiling::default()
                },
                "min_birth_granularity_years must be between 1 and 50, not 0",
            ),
        ];
        for (ceiling, expected) in cases {
            let message = match ceiling.validate() {
                Err(ExportError::InvalidPolicy(message)) => message,
                other => panic!("{ceiling:?} should be refused, got {other:?}"),
            };
            assert!(
                message.contains(expected),
                "{message:?} should say {expected:?}"
            );
            assert!(
                matches!(
                    ceiling.check(&typical_policy()),
                    Err(ExportError::InvalidPolicy(_))
                ),
                "check refuses a malformed ceiling too"
            );
        }
    }

    #[test]
    fn a_ceiling_survives_a_toml_round_trip() {
        for ceiling in [
            ExportCeiling::default(),
            ExportCeiling {
                datasets: vec![Dataset::Observations],
                min_k: 11,
                min_l: Some(3),
                max_suppression: 0.01,
                min_birth_granularity_years: 10,
                allow_zip3: false,
                allow_sex: false,
                finest_dates: DateDetail::Year,
                allow_per_recipient_pseudonyms: true,
            },
        ] {
            let text = toml::to_string(&ceiling).unwrap();
            assert_eq!(ExportCeiling::from_toml(&text).unwrap(), ceiling, "{text}");
        }
    }

    #[test]
    fn a_ceiling_written_by_hand_parses_and_bad_ones_name_the_fault() {
        let text = r#"
            datasets = ["observations", "conditions"]
            min_k = 10
            max_suppression = 0.02
            min_birth_granularity_years = 10
            allow_zip3 = false
            allow_sex = true
            finest_dates = "year"
            allow_per_recipient_pseudonyms = false
        "#;
        let ceiling = ExportCeiling::from_toml(text).unwrap();
        assert_eq!(ceiling.min_l, None);
        assert_eq!(ceiling.finest_dates, DateDetail::Year);
        for (change, expected) in [
            (format!("{text}\nsurprise = 1"), "unknown field"),
            (text.replace("min_k = 10\n", ""), "missing field `min_k`"),
            (text.replace("\"year\"", "\"hour\""), "unknown variant"),
            (text.replace("min_k = 10", "min_k = 0"), "min_k must be"),
        ] {
            let message = match ExportCeiling::from_toml(&change) {
                Err(ExportError::InvalidPolicy(message)) => message,
                other => panic!("{change} should be refused, got {other:?}"),
            };
            assert!(
                message.contains(expected),
                "{message:?} should say {expected:?}"
            );
        }
    }
}
