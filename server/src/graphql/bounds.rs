//! Bounds a query must keep before async-graphql parses and validates it.
//!
//! async-graphql's parser recurses once per nested list, object or selection without a limit
//! on values, so a 4 KB query of `[[[[…]]]]` overflows a worker's stack and aborts the process;
//! and its depth check expands every fragment spread without memory, so fragments that each
//! spread the next twice take 2^n steps before any complexity limit is reached. Both run before
//! anything of ours could refuse the query, so the checks here run first, in time and memory
//! linear in the query's length:
//! - [`scan_text`] reads the raw text once, before parsing, and bounds bracket nesting and the
//!   number of tokens;
//! - [`check_document`] reads the parsed document once, sizing every fragment once (memoized,
//!   cycles refused), and bounds fragments, the expanded selection count, root fields and
//!   aliases, before validation expands anything;
//! - [`check_document_text`] and [`check_variables_text`] refuse NUL characters, which no
//!   PostgreSQL text can hold.
//!
//! [`check_request`] runs them all; the HTTP endpoint and the fuzz target call it.

use async_graphql::parser::types::{ExecutableDocument, SelectionSet};
use std::collections::HashMap;

/// How large a query may be, in the measures that bound parsing and validation work.
#[derive(Clone, Copy, Debug)]
pub struct DocumentBounds {
    /// Deepest nesting of `{`, `[` and `(` in the text: selections, list and object values,
    /// arguments.
    pub max_nesting: usize,
    /// Most lexical tokens in the text.
    pub max_tokens: usize,
    /// Most fragment definitions.
    pub max_fragments: usize,
    /// Most selections (fields, spreads, inline fragments) once every spread is expanded, in
    /// any operation or fragment.
    pub max_selections: usize,
    /// Most fields at the root of an operation, spreads expanded (aliases included).
    pub max_root_fields: usize,
    /// Most aliased fields written in the document.
    pub max_aliases: usize,
}

impl Default for DocumentBounds {
    /// Room for GraphiQL's introspection query (about 10 levels, 3 fragments, some 150
    /// selections expanded) and for every query the clients send, with a wide margin; far
    /// below what costs a worker measurable time.
    fn default() -> Self {
        DocumentBounds {
            max_nesting: 48,
            max_tokens: 20_000,
            max_fragments: 32,
            max_selections: 1_500,
            max_root_fields: 32,
            max_aliases: 64,
        }
    }
}

/// Why a query was refused before parsing or validation.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BoundsError {
    /// Brackets nest deeper than allowed.
    #[error("the query nests brackets more than {0} deep")]
    Nesting(usize),
    /// The text has too many tokens.
    #[error("the query has more than {0} tokens")]
    Tokens(usize),
    /// Too many fragment definitions.
    #[error("the query defines more than {0} fragments")]
    Fragments(usize),
    /// Expanding the fragment spreads gives too many selections.
    #[error("the query selects more than {0} fields once its fragments are expanded")]
    Selections(usize),
    /// Too many fields at the root of an operation.
    #[error("an operation selects more than {0} root fields")]
    RootFields(usize),
    /// Too many aliases.
    #[error("the query uses more than {0} aliases")]
    Aliases(usize),
    /// A fragment spreads itself, directly or through others.
    #[error("fragment {0} spreads itself")]
    FragmentCycle(String),
    /// A string value holds a NUL character, which no stored text may hold.
    #[error("text must not contain NUL characters (U+0000)")]
    NulCharacter,
}

/// Every check of this module on one request, in order: variables, text, then the document,
/// parsed here once and kept in the request for execution. A syntax error passes, to be
/// reported by execution with its position.
pub fn check_request(
    request: &mut async_graphql::Request,
    bounds: &DocumentBounds,
) -> Result<(), BoundsError> {
    check_variables_text(&request.variables)?;
    scan_text(&request.query, bounds)?;
    match request.parsed_query() {
        Ok(document) => {
            check_document(document, bounds)?;
            check_document_text(document)
        }
        Err(_) => Ok(()),
    }
}

/// Reads the raw query text once: bracket nesting and token count, strings and comments
/// skipped as the GraphQL lexer does.
pub fn scan_text(query: &str, bounds: &DocumentBounds) -> Result<(), BoundsError> {
    let bytes = query.as_bytes();
    let mut depth = 0usize;
    let mut tokens = 0usize;
    let mut at = 0usize;
    while at < bytes.len() {
        let byte = bytes[at];
        match byte {
            b'#' => {
                while at < bytes.len() && bytes[at] != b'\n' && bytes[at] != b'\r' {
                    at += 1;
                }
                continue;
            }
            b'"' if bytes[at..].starts_with(b"\"\"\"") => {
                at = block_string_end(bytes, at + 3);
                tokens += 1;
                continue;
            }
            b'"' => {
                at = string_end(bytes, at + 1);
                tokens += 1;
                continue;
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > bounds.max_nesting {
                    return Err(BoundsError::Nesting(bounds.max_nesting));
                }
                tokens += 1;
            }
            b'}' | b']' | b')' => {
                depth = depth.saturating_sub(1);
                tokens += 1;
            }
            _ if byte.is_ascii_whitespace() || byte == b',' => {}
            _ if is_word_byte(byte) => {
                while at < bytes.len() && is_word_byte(bytes[at]) {
                    at += 1;
                }
                tokens += 1;
                if tokens > bounds.max_tokens {
                    return Err(BoundsError::Tokens(bounds.max_tokens));
                }
                continue;
            }
            _ => tokens += 1,
        }
        if tokens > bounds.max_tokens {
            return Err(BoundsError::Tokens(bounds.max_tokens));
        }
        at += 1;
    }
    Ok(())
}

/// Names, numbers and the dots of a spread: what the lexer reads as one token.
fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-' | b'+')
}

/// The index just past the closing quote of a string whose body starts at `at`.
fn string_end(bytes: &[u8], mut at: usize) -> usize {
    while at < bytes.len() {
        match bytes[at] {
            b'\\' => at += 2,
            b'"' | b'\n' | b'\r' => return at + 1,
            _ => at += 1,
        }
    }
    bytes.len()
}

/// The index just past the closing `"""` of a block string whose body starts at `at`.
fn block_string_end(bytes: &[u8], mut at: usize) -> usize {
    while at < bytes.len() {
        if bytes[at..].starts_with(b"\\\"\"\"") {
            at += 4;
        } else if bytes[at..].starts_with(b"\"\"\"") {
            return at + 3;
        } else {
            at += 1;
        }
    }
    bytes.len()
}

/// Reads the parsed document once, before validation: every fragment is sized once.
pub fn check_document(
    document: &ExecutableDocument,
    bounds: &DocumentBounds,
) -> Result<(), BoundsError> {
    if document.fragments.len() > bounds.max_fragments {
        return Err(BoundsError::Fragments(bounds.max_fragments));
    }
    let mut aliases = 0usize;
    for (_, operation) in document.operations.iter() {
        aliases += count_aliases(&operation.node.selection_set.node);
    }
    for fragment in document.fragments.values() {
        aliases += count_aliases(&fragment.node.selection_set.node);
    }
    if aliases > bounds.max_aliases {
        return Err(BoundsError::Aliases(bounds.max_aliases));
    }
    let mut expansion = Expansion {
        document,
        limit: bounds.max_selections,
        fragments: HashMap::new(),
    };
    for name in document.fragments.keys() {
        expansion.fragment(name.as_str())?;
    }
    for (_, operation) in document.operations.iter() {
        expansion.selections(&operation.node.selection_set.node)?;
        let roots = expansion.root_fields(&operation.node.selection_set.node);
        if roots > bounds.max_root_fields {
            return Err(BoundsError::RootFields(bounds.max_root_fields));
        }
    }
    Ok(())
}

/// Refuses a NUL character in any string of the request's variables: PostgreSQL's text cannot
/// hold one, and finding it only when a statement fails would make bad input an internal error.
pub fn check_variables_text(variables: &async_graphql::Variables) -> Result<(), BoundsError> {
    if variables.values().all(const_is_clean) {
        Ok(())
    } else {
        Err(BoundsError::NulCharacter)
    }
}

fn const_is_clean(value: &async_graphql::Value) -> bool {
    use async_graphql::Value;
    match value {
        Value::String(text) => !text.contains('\0'),
        Value::List(items) => items.iter().all(const_is_clean),
        Value::Object(fields) => fields.values().all(const_is_clean),
        _ => true,
    }
}

/// Refuses a NUL character in any string of the document: arguments, directive arguments and
/// variable defaults (see [`check_variables_text`]).
pub fn check_document_text(document: &ExecutableDocument) -> Result<(), BoundsError> {
    use async_graphql::parser::types::Selection;
    fn set_is_clean(set: &SelectionSet) -> bool {
        set.items.iter().all(|item| match &item.node {
            Selection::Field(field) => {
                field
                    .node
                    .arguments
                    .iter()
                    .all(|(_, value)| value_is_clean(&value.node))
                    && directives_are_clean(&field.node.directives)
                    && set_is_clean(&field.node.selection_set.node)
            }
            Selection::FragmentSpread(spread) => directives_are_clean(&spread.node.directives),
            Selection::InlineFragment(inline) => {
                directives_are_clean(&inline.node.directives)
                    && set_is_clean(&inline.node.selection_set.node)
            }
        })
    }
    fn directives_are_clean(
        directives: &[async_graphql::Positioned<async_graphql::parser::types::Directive>],
    ) -> bool {
        directives.iter().all(|directive| {
            directive
                .node
                .arguments
                .iter()
                .all(|(_, value)| value_is_clean(&value.node))
        })
    }
    fn value_is_clean(value: &async_graphql_value::Value) -> bool {
        use async_graphql_value::Value;
        match value {
            Value::String(text) => !text.contains('\0'),
            Value::List(items) => items.iter().all(value_is_clean),
            Value::Object(fields) => fields.values().all(value_is_clean),
            _ => true,
        }
    }
    let operations_clean = document.operations.iter().all(|(_, operation)| {
        operation
            .node
            .variable_definitions
            .iter()
            .all(|definition| {
                definition
                    .node
                    .default_value
                    .as_ref()
                    .is_none_or(|default| const_is_clean(&default.node))
            })
            && directives_are_clean(&operation.node.directives)
            && set_is_clean(&operation.node.selection_set.node)
    });
    let fragments_clean = document.fragments.values().all(|fragment| {
        directives_are_clean(&fragment.node.directives)
            && set_is_clean(&fragment.node.selection_set.node)
    });
    if operations_clean && fragments_clean {
        Ok(())
    } else {
        Err(BoundsError::NulCharacter)
    }
}

/// Aliased fields written in `set` and below, spreads not followed.
fn count_aliases(set: &SelectionSet) -> usize {
    use async_graphql::parser::types::Selection;
    set.items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(field) => {
                usize::from(field.node.alias.is_some())
                    + count_aliases(&field.node.selection_set.node)
            }
            Selection::InlineFragment(inline) => count_aliases(&inline.node.selection_set.node),
            Selection::FragmentSpread(_) => 0,
        })
        .sum()
}

/// A fragment's expanded size, once known; `None` while it is being sized, so that a spread
/// reaching it again is a cycle.
type FragmentSize = Option<usize>;

/// Expanded selection counts, each fragment sized once.
struct Expansion<'a> {
    document: &'a ExecutableDocument,
    limit: usize,
    fragments: HashMap<&'a str, FragmentSize>,
}

impl<'a> Expansion<'a> {
    fn fragment(&mut self, name: &'a str) -> Result<usize, BoundsError> {
        match self.fragments.get(name) {
            Some(Some(size)) => return Ok(*size),
            Some(None) => return Err(BoundsError::FragmentCycle(name.to_owned())),
            None => {}
        }
        let Some((name, definition)) = self.document.fragments.get_key_value(name) else {
            // An unknown fragment is validation's to report; it adds nothing to expand.
            return Ok(0);
        };
        self.fragments.insert(name.as_str(), None);
        let size = self.selections(&definition.node.selection_set.node)?;
        self.fragments.insert(name.as_str(), Some(size));
        Ok(size)
    }

    /// Selections in `set` with every spread expanded; refused past the limit.
    fn selections(&mut self, set: &'a SelectionSet) -> Result<usize, BoundsError> {
        use async_graphql::parser::types::Selection;
        let mut total = 0usize;
        for item in &set.items {
            let below = match &item.node {
                Selection::Field(field) => self.selections(&field.node.selection_set.node)?,
                Selection::FragmentSpread(spread) => {
                    self.fragment(spread.node.fragment_name.node.as_str())?
                }
                Selection::InlineFragment(inline) => {
                    self.selections(&inline.node.selection_set.node)?
                }
            };
            total = total.saturating_add(1).saturating_add(below);
            if total > self.limit {
                return Err(BoundsError::Selections(self.limit));
            }
        }
        Ok(total)
    }

    /// Fields at the root of `set`, spreads and inline fragments expanded. Only called after
    /// [`Expansion::selections`] accepted `set`, so it is bounded by the selection limit.
    fn root_fields(&self, set: &'a SelectionSet) -> usize {
        use async_graphql::parser::types::Selection;
        set.items
            .iter()
            .map(|item| match &item.node {
                Selection::Field(_) => 1,
                Selection::FragmentSpread(spread) => self
                    .document
                    .fragments
                    .get(&spread.node.fragment_name.node)
                    .map_or(0, |fragment| {
                        self.root_fields(&fragment.node.selection_set.node)
                    }),
                Selection::InlineFragment(inline) => {
                    self.root_fields(&inline.node.selection_set.node)
                }
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(query: &str) -> Result<(), BoundsError> {
        let bounds = DocumentBounds::default();
        scan_text(query, &bounds)?;
        let document = async_graphql::parser::parse_query(query).expect("a valid query");
        check_document(&document, &bounds)
    }

    #[test]
    fn ordinary_queries_pass() {
        check("{ me { id username } }").unwrap();
        check(
            "query($id: ID!) { patient(id: $id) { records(first: 5) { edges { node { version } } } } }",
        )
        .unwrap();
    }

    #[test]
    fn deep_values_are_refused_before_parsing() {
        let lists = format!(
            "{{ me(x: {}1{}) {{ id }} }}",
            "[".repeat(2_000),
            "]".repeat(2_000)
        );
        assert_eq!(
            scan_text(&lists, &DocumentBounds::default()),
            Err(BoundsError::Nesting(48))
        );
        let objects = format!(
            "{{ me(x: {}) {{ id }} }}",
            "{a: ".repeat(5_000) + "1" + &"}".repeat(5_000)
        );
        assert_eq!(
            scan_text(&objects, &DocumentBounds::default()),
            Err(BoundsError::Nesting(48))
        );
    }

    #[test]
    fn brackets_in_strings_and_comments_do_not_count() {
        let inside = "[".repeat(100);
        let bounds = DocumentBounds::default();
        scan_text(&format!("# {inside}\n{{ me {{ id }} }}"), &bounds).unwrap();
        scan_text(&format!("{{ me(x: \"{inside}\") {{ id }} }}"), &bounds).unwrap();
        scan_text(
            &format!("{{ me(x: \"\"\"{inside}\"\"\") {{ id }} }}"),
            &bounds,
        )
        .unwrap();
        scan_text(&format!("{{ me(x: \"\\\"{inside}\") {{ id }} }}"), &bounds).unwrap();
        scan_text(
            &format!("{{ me(x: \"\"\"\\\"\"\"{inside}\"\"\") {{ id }} }}"),
            &bounds,
        )
        .unwrap();
    }

    #[test]
    fn doubling_fragments_are_refused_without_expanding_them() {
        let mut query = String::from("{ me { ...L0 } }\n");
        for level in 0..40 {
            query.push_str(&format!(
                "fragment L{level} on User {{ id ...L{next} ...L{next} }}\n",
                next = level + 1
            ));
        }
        query.push_str("fragment L40 on User { id }\n");
        let bounds = DocumentBounds {
            max_fragments: 64,
            ..DocumentBounds::default()
        };
        let document = async_graphql::parser::parse_query(&query).unwrap();
        assert_eq!(
            check_document(&document, &bounds),
            Err(BoundsError::Selections(1_500))
        );
        assert_eq!(check(&query), Err(BoundsError::Fragments(32)));
    }

    #[test]
    fn fragment_cycles_are_refused() {
        assert!(matches!(
            check("{ me { ...A } } fragment A on User { ...B } fragment B on User { id ...A }"),
            Err(BoundsError::FragmentCycle(_))
        ));
    }

    #[test]
    fn nul_characters_are_refused_wherever_they_are() {
        let clean = async_graphql::Variables::default();
        for query in [
            r#"{ login(username: "a\u0000b", password: "x") { token } }"#,
            r#"{ me(x: [{ a: "\u0000" }]) { id } }"#,
            r#"query($a: String = "\u0000") { me { id } }"#,
            r#"{ me @include(if: "\u0000") { id } }"#,
        ] {
            let document = async_graphql::parser::parse_query(query).unwrap();
            assert_eq!(
                check_document_text(&document),
                Err(BoundsError::NulCharacter),
                "{query}"
            );
        }
        let document = async_graphql::parser::parse_query("{ me { id } }").unwrap();
        check_document_text(&document).unwrap();
        check_variables_text(&clean).unwrap();
        let variables = async_graphql::Variables::from_json(serde_json::json!({
            "input": { "names": ["ok", "not\u{0}ok"] }
        }));
        assert_eq!(
            check_variables_text(&variables),
            Err(BoundsError::NulCharacter)
        );
    }

    #[test]
    fn aliases_and_root_fields_are_counted() {
        let aliased: String = (0..65).map(|i| format!("a{i}: me {{ id }} ")).collect();
        assert_eq!(
            check(&format!("{{ {aliased} }}")),
            Err(BoundsError::Aliases(64))
        );
        let roots: String = (0..33).map(|_| "me { id } ").collect();
        assert_eq!(
            check(&format!("{{ ...R }} fragment R on QueryRoot {{ {roots} }}")),
            Err(BoundsError::RootFields(32))
        );
    }
}
