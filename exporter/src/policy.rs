//! Export policies: what to export and how anonymous it must be. Given as TOML (the CLI) or
//! built from GraphQL input (the server), and validated before any data is touched.

use crate::error::ExportError;
use serde::{Deserialize, Serialize};

/// The data set an export contains besides the `person` table.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dataset {
    /// Only the `person` table.
    Patients,
    /// `person` and `measurement`.
    Observations,
    /// `person` and `condition_occurrence`.
    Conditions,
    /// `person` and `drug_exposure`.
    Medications,
}

impl std::fmt::Display for Dataset {
    /// The name policies and ceilings spell it with.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Dataset::Patients => "patients",
            Dataset::Observations => "observations",
            Dataset::Conditions => "conditions",
            Dataset::Medications => "medications",
        })
    }
}

/// How the birth date is generalized.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum BirthGeneralization {
    /// Age at export in bands of `width` years (`40-49`); 90 and over is one band (Safe Harbor).
    AgeBand {
        /// Band width in years (1 to 50).
        width: u32,
    },
    /// Year of birth; years of persons 90 and over are replaced by `<=` the cut-off year.
    BirthYear,
}

/// How the postal code is generalized.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZipGeneralization {
    /// The first three digits, `000` for the sparsely populated areas Safe Harbor lists.
    Zip3,
    /// Not exported.
    Remove,
}

/// How event dates are generalized.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum DateGeneralization {
    /// The year only (Safe Harbor).
    Year,
    /// Year and month.
    Month,
    /// The exact day, shifted by a per-person offset of at most `max_days` either way, so that
    /// intervals within a person are kept.
    ShiftPerPerson {
        /// Largest shift in days (1 to 365).
        max_days: u32,
    },
}

/// How fine dates in the output may be; ordered from coarsest to finest, so that a ceiling can
/// compare a policy's dates with the finest it allows.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Ord, PartialOrd, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DateDetail {
    /// The year.
    Year,
    /// Year and month.
    Month,
    /// The day (shifted or not: a shift hides the date, not the intervals).
    Day,
}

impl std::fmt::Display for DateDetail {
    /// The name ceilings spell it with.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            DateDetail::Year => "year",
            DateDetail::Month => "month",
            DateDetail::Day => "day",
        })
    }
}

/// Who can join two exports' pseudonyms.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum PseudonymScope {
    /// A fresh key per export: no two exports can be joined (the default).
    PerExport,
    /// One key per named recipient: that recipient's exports join with each other only.
    PerRecipient {
        /// The recipient's name.
        recipient: String,
    },
}

/// What an export contains and the anonymity it must reach.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportPolicy {
    /// The data set.
    pub dataset: Dataset,
    /// Event columns to include (all allowed ones if empty).
    #[serde(default)]
    pub columns: Vec<String>,
    /// Birth date generalization.
    pub birth: BirthGeneralization,
    /// Postal code generalization.
    pub zip: ZipGeneralization,
    /// Whether sex is a quasi-identifier in the output (else it is not exported).
    #[serde(default = "yes")]
    pub include_sex: bool,
    /// Event date generalization.
    pub dates: DateGeneralization,
    /// The sensitive attribute checked for l-diversity: an event column, usually `code`.
    #[serde(default)]
    pub sensitive: Option<String>,
    /// Minimum size of every equivalence class of persons.
    #[serde(default = "default_k")]
    pub k: usize,
    /// Minimum distinct sensitive values per equivalence class, if checked.
    #[serde(default)]
    pub l: Option<usize>,
    /// Largest share of persons that may be suppressed to reach k and l, from 0 to 1.
    #[serde(default = "default_max_suppression")]
    pub max_suppression: f64,
    /// Who can join pseudonyms across exports.
    #[serde(default = "per_export")]
    pub pseudonym_scope: PseudonymScope,
}

fn yes() -> bool {
    true
}
fn default_k() -> usize {
    5
}
fn default_max_suppression() -> f64 {
    0.05
}
fn per_export() -> PseudonymScope {
    PseudonymScope::PerExport
}

/// The event columns an export can carry, in output order.
pub const EVENT_COLUMNS: [&str; 5] = ["code_system", "code", "value", "unit", "event_date"];

impl ExportPolicy {
    /// Parses and validates a TOML policy.
    pub fn from_toml(text: &str) -> Result<Self, ExportError> {
        let policy: ExportPolicy = toml::from_str(text)
            .map_err(|error| ExportError::InvalidPolicy(error.message().to_owned()))?;
        policy.validate()?;
        Ok(policy)
    }

    /// Checks every field; the message names the field at fault.
    pub fn validate(&self) -> Result<(), ExportError> {
        let invalid = |message: String| Err(ExportError::InvalidPolicy(message));
        if !(2..=1000).contains(&self.k) {
            return invalid(format!("k must be between 2 and 1000, not {}", self.k));
        }
        if let Some(l) = self.l {
            if !(2..=self.k).contains(&l) {
                return invalid(format!("l must be between 2 and k ({}), not {l}", self.k));
            }
            if self.sensitive.is_none() {
                return invalid("l needs a sensitive attribute".into());
            }
            if self.dataset == Dataset::Patients {
                return invalid(
                    "l-diversity needs events: choose observations, conditions or medications"
                        .into(),
                );
            }
        }
        if !(0.0..=1.0).contains(&self.max_suppression) {
            return invalid("max_suppression must be between 0 and 1".into());
        }
        if let BirthGeneralization::AgeBand { width } = self.birth {
            if !(1..=50).contains(&width) {
                return invalid(format!("age band width must be 1 to 50 years, not {width}"));
            }
        }
        if let DateGeneralization::ShiftPerPerson { max_days } = self.dates {
            if !(1..=365).contains(&max_days) {
                return invalid(format!("date shift must be 1 to 365 days, not {max_days}"));
            }
        }
        for column in self.columns.iter().chain(&self.sensitive) {
            if !EVENT_COLUMNS.contains(&column.as_str()) {
                return invalid(format!(
                    "unknown column {column:?}; known: {}",
                    EVENT_COLUMNS.join(", ")
                ));
            }
        }
        if let PseudonymScope::PerRecipient { recipient } = &self.pseudonym_scope {
            if recipient.trim().is_empty() {
                return invalid("pseudonym recipient is empty".into());
            }
        }
        Ok(())
    }

    /// How fine the exported event dates are.
    pub fn date_detail(&self) -> DateDetail {
        match self.dates {
            DateGeneralization::Year => DateDetail::Year,
            DateGeneralization::Month => DateDetail::Month,
            DateGeneralization::ShiftPerPerson { .. } => DateDetail::Day,
        }
    }

    /// How many years of birth one exported birth value covers: the band width, or 1 for the
    /// year of birth. The larger, the harder a person is to single out.
    pub fn birth_granularity_years(&self) -> u32 {
        match self.birth {
            BirthGeneralization::AgeBand { width } => width,
            BirthGeneralization::BirthYear => 1,
        }
    }

    /// The event columns to write, in output order.
    pub fn event_columns(&self) -> Vec<&'static str> {
        EVENT_COLUMNS
            .into_iter()
            .filter(|column| self.columns.is_empty() || self.columns.iter().any(|c| c == column))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        dataset = "conditions"
        birth = { kind = "age_band", width = 10 }
        zip = "zip3"
        dates = { kind = "year" }
        sensitive = "code"
        k = 5
        l = 2
    "#;

    #[test]
    fn a_complete_policy_parses_with_defaults() {
        let policy = ExportPolicy::from_toml(GOOD).unwrap();
        assert_eq!(policy.max_suppression, 0.05);
        assert_eq!(policy.pseudonym_scope, PseudonymScope::PerExport);
        assert_eq!(policy.event_columns(), EVENT_COLUMNS.to_vec());
    }

    #[test]
    fn bad_policies_name_what_is_wrong() {
        for (change, expected) in [
            (GOOD.replace("k = 5", "k = 1"), "k must be"),
            (GOOD.replace("l = 2", "l = 9"), "l must be"),
            (
                GOOD.replace("sensitive = \"code\"", "sensitive = \"name\""),
                "unknown column",
            ),
            (GOOD.replace("width = 10", "width = 0"), "age band"),
            (
                GOOD.replace("dataset = \"conditions\"", "dataset = \"everything\""),
                "unknown variant",
            ),
            (format!("{GOOD}\nsurprise = 1"), "unknown field"),
        ] {
            let error = ExportPolicy::from_toml(&change).unwrap_err().to_string();
            assert!(
                error.contains(expected),
                "{error} should mention {expected}"
            );
        }
    }
}
