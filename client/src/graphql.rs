//! The GraphQL envelope: answers decoded into their `data` or their first error, and the pieces
//! of `data` into typed values. Nothing here does I/O, so every answer shape is testable without
//! a server.

use crate::error::ClientError;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

/// A GraphQL response: `data` (possibly null) and `errors` (possibly absent).
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    errors: Vec<GraphqlError>,
}

#[derive(Deserialize)]
struct GraphqlError {
    message: String,
    #[serde(default)]
    extensions: Option<Extensions>,
}

#[derive(Deserialize)]
struct Extensions {
    #[serde(default)]
    code: Option<String>,
}

/// The `data` of an answer with HTTP status `status` and body `body`, or its first error as
/// [`ClientError::Api`]. The server sends its refusals in this envelope whatever the status (a
/// refusal made before the schema runs comes with 4xx or 5xx), so the body decides, and a
/// status only matters when the body is not an envelope.
pub(crate) fn decode_answer(status: u16, body: &[u8]) -> Result<Value, ClientError> {
    let envelope = envelope(status, body)?;
    if let Some(error) = first_error(envelope.errors) {
        return Err(error);
    }
    match envelope.data {
        Some(data) if !data.is_null() && (200..300).contains(&status) => Ok(data),
        _ => Err(ClientError::Malformed(format!(
            "HTTP {status} with neither data nor an error"
        ))),
    }
}

/// Why a request that is not GraphQL (the proving key's download) failed with `status`: the
/// error in the body's envelope, or the status alone.
pub(crate) fn refusal(status: u16, body: &[u8]) -> ClientError {
    match envelope(status, body) {
        Ok(envelope) => first_error(envelope.errors)
            .unwrap_or_else(|| ClientError::Malformed(format!("HTTP {status} without an error"))),
        Err(error) => error,
    }
}

fn envelope(status: u16, body: &[u8]) -> Result<Envelope, ClientError> {
    serde_json::from_slice(body).map_err(|_| {
        ClientError::Malformed(format!(
            "HTTP {status} with a body that is not a GraphQL response"
        ))
    })
}

/// The first error as [`ClientError::Api`], counting the others in its message.
fn first_error(errors: Vec<GraphqlError>) -> Option<ClientError> {
    let mut errors = errors.into_iter();
    let first = errors.next()?;
    let message = match errors.count() {
        0 => first.message,
        more => format!("{} (and {more} more errors)", first.message),
    };
    Some(ClientError::Api {
        code: first
            .extensions
            .and_then(|extensions| extensions.code)
            .unwrap_or_else(|| "UNKNOWN".to_owned()),
        message,
    })
}

/// The root field `field` of `data`, decoded as `T`.
pub(crate) fn take<T: DeserializeOwned>(mut data: Value, field: &str) -> Result<T, ClientError> {
    let value = data
        .get_mut(field)
        .map(Value::take)
        .ok_or_else(|| ClientError::Malformed(format!("no {field} in the answer")))?;
    serde_json::from_value(value)
        .map_err(|error| ClientError::Malformed(format!("{field}: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(value: Value) -> Vec<u8> {
        serde_json::to_vec(&value).unwrap()
    }

    #[test]
    fn a_graphql_error_is_an_api_error_with_its_code() {
        let refused = body(json!({
            "data": null,
            "errors": [{
                "message": "no live grant covers this patient",
                "locations": [{"line": 1, "column": 12}],
                "path": ["openConsent"],
                "extensions": {"code": "FORBIDDEN"}
            }]
        }));
        match decode_answer(200, &refused) {
            Err(ClientError::Api { code, message }) => {
                assert_eq!(code, "FORBIDDEN");
                assert_eq!(message, "no live grant covers this patient");
            }
            other => panic!("expected an API error, got {other:?}"),
        }

        // A refusal made before the schema comes with its HTTP status, in the same envelope.
        let throttled = body(json!({"errors": [
            {"message": "too many failed logins", "extensions": {"code": "TOO_MANY_REQUESTS", "retryAfterSeconds": 8}},
            {"message": "second", "extensions": {"code": "BAD_USER_INPUT"}}
        ]}));
        assert!(matches!(
            decode_answer(429, &throttled),
            Err(ClientError::Api { code, message })
                if code == "TOO_MANY_REQUESTS" && message == "too many failed logins (and 1 more errors)"
        ));

        let uncoded = body(json!({"errors": [{"message": "odd"}]}));
        assert!(matches!(
            decode_answer(200, &uncoded),
            Err(ClientError::Api { code, .. }) if code == "UNKNOWN"
        ));
    }

    #[test]
    fn data_is_returned_and_anything_else_is_malformed() {
        let answer = body(json!({"data": {"login": {"token": "t"}}}));
        assert_eq!(
            decode_answer(200, &answer).unwrap(),
            json!({"login": {"token": "t"}})
        );
        for (status, text) in [
            (502, b"<html>bad gateway</html>".to_vec()),
            (200, body(json!({"data": null}))),
            (200, body(json!({}))),
            (500, body(json!({"data": {"login": null}}))),
        ] {
            assert!(
                matches!(decode_answer(status, &text), Err(ClientError::Malformed(_))),
                "HTTP {status}: {}",
                String::from_utf8_lossy(&text)
            );
        }
    }

    #[test]
    fn a_failed_download_is_the_error_in_its_body_or_its_status() {
        let refused =
            body(json!({"errors": [{"message": "no key", "extensions": {"code": "NOT_FOUND"}}]}));
        assert!(matches!(
            refusal(404, &refused),
            ClientError::Api { code, .. } if code == "NOT_FOUND"
        ));
        assert!(matches!(
            refusal(503, b"upstream unavailable"),
            ClientError::Malformed(message) if message.contains("503")
        ));
        assert!(matches!(
            refusal(500, &body(json!({"data": null}))),
            ClientError::Malformed(message) if message.contains("500")
        ));
    }

    #[test]
    fn a_missing_or_mistyped_field_is_malformed() {
        let data = json!({"login": {"token": 7}});
        assert!(matches!(
            take::<Value>(data.clone(), "consentKeys"),
            Err(ClientError::Malformed(message)) if message.contains("consentKeys")
        ));
        assert!(matches!(
            take::<String>(data, "login"),
            Err(ClientError::Malformed(_))
        ));
    }
}
