//! From identified persons to anonymized rows: pseudonyms, generalized quasi-identifiers, and
//! k-anonymity and l-diversity enforced by suppressing whole equivalence classes.

use crate::error::ExportError;
use crate::policy::{BirthGeneralization, DateGeneralization, ExportPolicy, ZipGeneralization};
use crate::source::{ClinicalEvent, Person};
use chrono::{Datelike, NaiveDate};
use hmac::{Hmac, Mac};
use rand::RngCore;
use rayon::prelude::*;
use sha3::Sha3_256;
use std::collections::{BTreeSet, HashMap};
use zeroize::Zeroizing;

/// Three-digit ZIP areas of 20,000 people or fewer, which Safe Harbor requires to be reported as
/// `000` (HHS guidance, 2000 census).
const SPARSE_ZIP3: [&str; 17] = [
    "036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878",
    "879", "884", "890", "893",
];

/// The key under which patient ids become pseudonyms and per-person date shifts are drawn.
pub struct PseudonymKey(Zeroizing<[u8; 32]>);

impl PseudonymKey {
    /// A fresh random key, used for one export and thrown away, so no two exports join.
    pub fn per_export() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        PseudonymKey(key)
    }

    /// The key of one recipient, derived from the exporting organization's secret: that
    /// recipient's exports join with each other and with no one else's.
    pub fn for_recipient(organization_secret: &[u8], recipient: &str) -> Self {
        let mut label = b"medvault/export-pseudonym/v1/".to_vec();
        label.extend_from_slice(recipient.as_bytes());
        PseudonymKey(Zeroizing::new(mac(organization_secret, &label)))
    }

    /// The exported person id: 128 bits of HMAC-SHA3-256 of the patient id, hex.
    pub fn person_id(&self, patient: &[u8; 16]) -> String {
        self.keyed().person_id(patient)
    }

    /// The HMAC keyed once, for many persons: keying it costs as much as two messages.
    fn keyed(&self) -> KeyedMac {
        KeyedMac(
            <Hmac<Sha3_256> as Mac>::new_from_slice(self.0.as_ref())
                .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length")),
        )
    }

    /// A per-person shift in days, uniform in `-max_days..=max_days`.
    #[cfg(test)]
    fn date_shift_days(&self, patient: &[u8; 16], max_days: u32) -> i64 {
        self.keyed().date_shift_days(patient, max_days)
    }
}

/// A [`PseudonymKey`]'s HMAC, keyed, for the persons of one export; dropped with it.
struct KeyedMac(Hmac<Sha3_256>);

impl KeyedMac {
    fn mac(&self, message: &[u8]) -> [u8; 32] {
        let mut mac = self.0.clone();
        mac.update(message);
        mac.finalize().into_bytes().into()
    }

    fn person_id(&self, patient: &[u8; 16]) -> String {
        hex::encode(&self.mac(patient)[..16])
    }

    fn date_shift_days(&self, patient: &[u8; 16], max_days: u32) -> i64 {
        let mut label = b"date-shift/".to_vec();
        label.extend_from_slice(patient);
        let digest = self.mac(&label);
        let draw = u64::from_be_bytes([
            digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
        ]);
        let span = 2 * u64::from(max_days) + 1;
        (draw % span) as i64 - i64::from(max_days)
    }
}

fn mac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha3_256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// An equivalence class's key: generalized birth, sex and ZIP.
type QuasiIdentifiers<'a> = (&'a str, Option<&'a str>, Option<&'a str>);

/// One exported person: no direct identifier, only generalized quasi-identifiers.
#[derive(Clone, Debug, PartialEq)]
pub struct PersonRow {
    /// The pseudonym.
    pub person_id: String,
    /// Age band (`40-49`, `90+`) or birth year (`1984`, `<=1936`).
    pub birth: String,
    /// Sex, if the policy exports it.
    pub sex: Option<String>,
    /// Three-digit ZIP, if the policy exports it and it is known.
    pub zip3: Option<String>,
    /// The person's date shift, when dates are shifted.
    shift_days: i64,
}

/// The persons kept after suppression, with what was achieved.
pub struct AnonymizedPersons {
    /// Kept persons, in input order.
    pub rows: Vec<PersonRow>,
    /// Index into `rows` by the vault's patient id, for events.
    pub by_patient: HashMap<[u8; 16], usize>,
    /// Persons given.
    pub persons_in: usize,
    /// Persons removed to reach k and l.
    pub suppressed: usize,
    /// The smallest equivalence class kept (0 if none).
    pub k_achieved: usize,
    /// The fewest distinct sensitive values in a kept class, when l was asked for.
    pub l_achieved: Option<usize>,
}

fn generalize_birth(policy: &ExportPolicy, birth: NaiveDate, as_of: NaiveDate) -> String {
    let age = as_of.years_since(birth).unwrap_or(0);
    match policy.birth {
        _ if age >= 90 && matches!(policy.birth, BirthGeneralization::AgeBand { .. }) => {
            "90+".to_owned()
        }
        BirthGeneralization::AgeBand { width } => {
            let low = age / width * width;
            let high = (low + width - 1).min(89);
            if width == 1 {
                low.to_string()
            } else {
                format!("{low}-{high}")
            }
        }
        BirthGeneralization::BirthYear if age >= 90 => format!("<={}", as_of.year() - 90),
        BirthGeneralization::BirthYear => birth.year().to_string(),
    }
}

fn generalize_zip(policy: &ExportPolicy, postal_code: Option<&str>) -> Option<String> {
    match policy.zip {
        ZipGeneralization::Remove => None,
        ZipGeneralization::Zip3 => {
            let digits: String = postal_code?
                .chars()
                .take_while(char::is_ascii_digit)
                .take(3)
                .collect();
            if digits.len() < 3 {
                None
            } else if SPARSE_ZIP3.contains(&digits.as_str()) {
                Some("000".to_owned())
            } else {
                Some(digits)
            }
        }
    }
}

/// Generalizes every person, groups them into equivalence classes by their quasi-identifiers,
/// and suppresses the classes smaller than k or (with l) with fewer than l distinct sensitive
/// values. Fails, before anything is written, if that suppresses more than the policy allows.
pub fn anonymize_persons(
    policy: &ExportPolicy,
    persons: &[Person],
    sensitive_values: &HashMap<[u8; 16], BTreeSet<String>>,
    key: &PseudonymKey,
    as_of: NaiveDate,
) -> Result<AnonymizedPersons, ExportError> {
    let keyed = key.keyed();
    let rows: Vec<PersonRow> = persons
        .par_iter()
        .map(|person| PersonRow {
            person_id: keyed.person_id(&person.patient_id),
            birth: generalize_birth(policy, person.date_of_birth, as_of),
            sex: policy.include_sex.then(|| person.sex.to_lowercase()),
            zip3: generalize_zip(policy, person.postal_code.as_deref()),
            shift_days: match policy.dates {
                DateGeneralization::ShiftPerPerson { max_days } => {
                    keyed.date_shift_days(&person.patient_id, max_days)
                }
                _ => 0,
            },
        })
        .collect();
    let mut classes: HashMap<QuasiIdentifiers, Vec<usize>> = HashMap::new();
    for (index, row) in rows.iter().enumerate() {
        classes
            .entry((&row.birth, row.sex.as_deref(), row.zip3.as_deref()))
            .or_default()
            .push(index);
    }
    let mut keep = vec![false; rows.len()];
    let (mut k_achieved, mut l_achieved) = (usize::MAX, usize::MAX);
    for members in classes.values() {
        let distinct = policy.l.map(|_| {
            members
                .iter()
                .filter_map(|&i| sensitive_values.get(&persons[i].patient_id))
                .flatten()
                .collect::<BTreeSet<_>>()
                .len()
        });
        let diverse = match (policy.l, distinct) {
            (Some(l), Some(distinct)) => distinct >= l,
            _ => true,
        };
        if members.len() >= policy.k && diverse {
            members.iter().for_each(|&i| keep[i] = true);
            k_achieved = k_achieved.min(members.len());
            l_achieved = l_achieved.min(distinct.unwrap_or(usize::MAX));
        }
    }
    let suppressed = keep.iter().filter(|kept| !**kept).count();
    let rate = if persons.is_empty() {
        0.0
    } else {
        suppressed as f64 / persons.len() as f64
    };
    if rate > policy.max_suppression {
        return Err(ExportError::PolicyNotMet {
            suppressed,
            persons: persons.len(),
            rate: rate * 100.0,
            k: policy.k,
            l: policy.l,
            max_rate: policy.max_suppression * 100.0,
        });
    }
    let mut by_patient = HashMap::new();
    let kept_rows: Vec<PersonRow> = rows
        .into_iter()
        .zip(persons)
        .zip(keep)
        .filter(|(_, kept)| *kept)
        .enumerate()
        .map(|(index, ((row, person), _))| {
            by_patient.insert(person.patient_id, index);
            row
        })
        .collect();
    Ok(AnonymizedPersons {
        k_achieved: if kept_rows.is_empty() { 0 } else { k_achieved },
        l_achieved: policy
            .l
            .map(|_| if kept_rows.is_empty() { 0 } else { l_achieved }),
        rows: kept_rows,
        by_patient,
        persons_in: persons.len(),
        suppressed,
    })
}

/// One exported event.
#[derive(Clone, Debug, PartialEq)]
pub struct EventRow {
    /// The person's pseudonym.
    pub person_id: String,
    /// The terminology.
    pub code_system: String,
    /// The code.
    pub code: String,
    /// A numeric measurement value.
    pub value: Option<f64>,
    /// Its unit.
    pub unit: Option<String>,
    /// The generalized date: `2026`, `2026-03`, or a shifted `2026-03-14`.
    pub event_date: String,
}

/// Anonymizes one event of a kept person (`None` for a suppressed one).
pub fn anonymize_event(
    policy: &ExportPolicy,
    persons: &AnonymizedPersons,
    event: &ClinicalEvent,
) -> Option<EventRow> {
    let view = EventView::new(policy, persons, event)?;
    Some(EventRow {
        person_id: view.person_id.to_owned(),
        code_system: view.code_system.to_owned(),
        code: view.code.to_owned(),
        value: view.value,
        unit: view.unit.map(str::to_owned),
        event_date: view.event_date.as_str().to_owned(),
    })
}

/// An anonymized event that borrows its text from the person and the source event: what
/// [`anonymize_event`] returns, without an allocation per column, for the writer to append
/// straight into its column builders.
pub(crate) struct EventView<'a> {
    pub(crate) person_id: &'a str,
    pub(crate) code_system: &'a str,
    pub(crate) code: &'a str,
    pub(crate) value: Option<f64>,
    pub(crate) unit: Option<&'a str>,
    pub(crate) event_date: DateText,
}

impl<'a> EventView<'a> {
    /// The anonymized view of one event of a kept person (`None` for a suppressed one).
    pub(crate) fn new(
        policy: &ExportPolicy,
        persons: &'a AnonymizedPersons,
        event: &'a ClinicalEvent,
    ) -> Option<Self> {
        let person = &persons.rows[*persons.by_patient.get(&event.patient_id)?];
        let date = event.effective_at.date_naive();
        let event_date = match policy.dates {
            DateGeneralization::Year => DateText::year(date),
            DateGeneralization::Month => DateText::month(date),
            DateGeneralization::ShiftPerPerson { .. } => {
                DateText::day(date + chrono::Duration::days(person.shift_days))
            }
        };
        let numeric = |value: &String| value.trim().parse::<f64>().ok().filter(|v| v.is_finite());
        let is_measurement = event.kind == crate::source::EventKind::Measurement;
        Some(EventView {
            person_id: &person.person_id,
            code_system: &event.code_system,
            code: &event.code,
            value: if is_measurement {
                event.value.as_ref().and_then(numeric)
            } else {
                None
            },
            unit: if is_measurement {
                event.unit.as_deref()
            } else {
                None
            },
            event_date,
        })
    }
}

/// A generalized event date as text, on the stack: `2026`, `2026-03` or `2026-03-14`, exactly
/// as chrono's `%Y`, `%Y-%m` and `%Y-%m-%d` write them.
pub(crate) struct DateText {
    bytes: [u8; 16],
    len: usize,
}

impl DateText {
    fn year(date: NaiveDate) -> Self {
        Self::write(date, 4, "%Y")
    }

    fn month(date: NaiveDate) -> Self {
        Self::write(date, 7, "%Y-%m")
    }

    fn day(date: NaiveDate) -> Self {
        Self::write(date, 10, "%Y-%m-%d")
    }

    /// The first `len` bytes of `YYYY-MM-DD`, or chrono's `format` for a year that does not
    /// have four digits (it adds a sign).
    fn write(date: NaiveDate, len: usize, format: &str) -> Self {
        let mut text = DateText {
            bytes: [0; 16],
            len: 0,
        };
        let year = date.year();
        if (0..=9999).contains(&year) {
            let (year, month, day) = (year as u32, date.month(), date.day());
            let digit = |value: u32| b'0' + (value % 10) as u8;
            text.bytes[..10].copy_from_slice(&[
                digit(year / 1000),
                digit(year / 100),
                digit(year / 10),
                digit(year),
                b'-',
                digit(month / 10),
                digit(month),
                b'-',
                digit(day / 10),
                digit(day),
            ]);
            text.len = len;
        } else {
            use std::fmt::Write;
            // Cannot fail: chrono's years have at most 6 digits and a sign.
            let _ = write!(text, "{}", date.format(format));
        }
        text
    }

    /// The text.
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl std::fmt::Write for DateText {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let end = self.len + text.len();
        self.bytes
            .get_mut(self.len..end)
            .ok_or(std::fmt::Error)?
            .copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// The sensitive value of an event for l-diversity, by column name.
pub fn sensitive_value(column: &str, event: &ClinicalEvent) -> Option<String> {
    match column {
        "code" => Some(format!("{}:{}", event.code_system, event.code)),
        "code_system" => Some(event.code_system.clone()),
        "value" => event.value.clone(),
        "unit" => event.unit.clone(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Dataset, PseudonymScope};

    fn policy(k: usize) -> ExportPolicy {
        ExportPolicy {
            dataset: Dataset::Patients,
            columns: Vec::new(),
            birth: BirthGeneralization::AgeBand { width: 10 },
            zip: ZipGeneralization::Zip3,
            include_sex: true,
            dates: DateGeneralization::Year,
            sensitive: None,
            k,
            l: None,
            max_suppression: 0.5,
            pseudonym_scope: PseudonymScope::PerExport,
        }
    }

    fn person(id: u8, born: (i32, u32, u32), zip: &str) -> Person {
        Person {
            patient_id: [id; 16],
            date_of_birth: NaiveDate::from_ymd_opt(born.0, born.1, born.2).unwrap(),
            sex: "female".into(),
            postal_code: Some(zip.into()),
        }
    }

    #[test]
    fn safe_harbor_generalizes_old_ages_and_sparse_zips() {
        let as_of = NaiveDate::from_ymd_opt(2026, 6, 1).unwrap();
        let p = policy(2);
        assert_eq!(
            generalize_birth(&p, NaiveDate::from_ymd_opt(1930, 1, 1).unwrap(), as_of),
            "90+"
        );
        assert_eq!(
            generalize_birth(&p, NaiveDate::from_ymd_opt(1984, 3, 9).unwrap(), as_of),
            "40-49"
        );
        let years = ExportPolicy {
            birth: BirthGeneralization::BirthYear,
            ..policy(2)
        };
        assert_eq!(
            generalize_birth(&years, NaiveDate::from_ymd_opt(1930, 1, 1).unwrap(), as_of),
            "<=1936"
        );
        assert_eq!(generalize_zip(&p, Some("03601")), Some("000".into()));
        assert_eq!(generalize_zip(&p, Some("02139-4307")), Some("021".into()));
        assert_eq!(generalize_zip(&p, Some("12")), None);
    }

    #[test]
    fn small_classes_are_suppressed_and_k_is_reported() {
        let as_of = NaiveDate::from_ymd_opt(2026, 6, 1).unwrap();
        let persons = vec![
            person(1, (1984, 1, 1), "02139"),
            person(2, (1985, 1, 1), "02140"),
            person(3, (1986, 1, 1), "02141"),
            person(4, (1950, 1, 1), "90210"),
        ];
        let key = PseudonymKey::per_export();
        let result = anonymize_persons(&policy(3), &persons, &HashMap::new(), &key, as_of).unwrap();
        assert_eq!(
            (result.rows.len(), result.suppressed, result.k_achieved),
            (3, 1, 3)
        );
        assert!(!result.by_patient.contains_key(&[4; 16]));
        let strict = ExportPolicy {
            max_suppression: 0.1,
            ..policy(3)
        };
        assert!(matches!(
            anonymize_persons(&strict, &persons, &HashMap::new(), &key, as_of),
            Err(ExportError::PolicyNotMet {
                suppressed: 1,
                persons: 4,
                ..
            })
        ));
    }

    #[test]
    fn dates_are_written_as_chrono_writes_them() {
        let days = [
            NaiveDate::from_ymd_opt(2026, 3, 4).unwrap(),
            NaiveDate::from_ymd_opt(1, 12, 31).unwrap(),
            NaiveDate::from_ymd_opt(999, 10, 9).unwrap(),
            NaiveDate::from_ymd_opt(9999, 1, 1).unwrap(),
            NaiveDate::from_ymd_opt(10_000, 1, 1).unwrap(),
            NaiveDate::from_ymd_opt(-44, 3, 15).unwrap(),
            NaiveDate::MAX,
            NaiveDate::MIN,
        ];
        for date in days {
            assert_eq!(DateText::year(date).as_str(), date.format("%Y").to_string());
            assert_eq!(
                DateText::month(date).as_str(),
                date.format("%Y-%m").to_string()
            );
            assert_eq!(
                DateText::day(date).as_str(),
                date.format("%Y-%m-%d").to_string()
            );
        }
    }

    #[test]
    fn pseudonyms_differ_between_export_keys_and_agree_per_recipient() {
        let patient = [9u8; 16];
        assert_ne!(
            PseudonymKey::per_export().person_id(&patient),
            PseudonymKey::per_export().person_id(&patient)
        );
        let a = PseudonymKey::for_recipient(b"org secret", "insurer-a");
        let again = PseudonymKey::for_recipient(b"org secret", "insurer-a");
        let b = PseudonymKey::for_recipient(b"org secret", "insurer-b");
        assert_eq!(a.person_id(&patient), again.person_id(&patient));
        assert_ne!(a.person_id(&patient), b.person_id(&patient));
        let shift = a.date_shift_days(&patient, 30);
        assert!((-30..=30).contains(&shift));
        // The HMAC keyed once gives what keying it for every message gives.
        assert_eq!(
            a.person_id(&patient),
            hex::encode(&mac(a.0.as_ref(), &patient)[..16])
        );
        let mut label = b"date-shift/".to_vec();
        label.extend_from_slice(&patient);
        let draw = u64::from_be_bytes(mac(a.0.as_ref(), &label)[..8].try_into().unwrap());
        assert_eq!(shift, (draw % 61) as i64 - 30);
    }
}
