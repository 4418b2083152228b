//! JSON values that refuse a key given twice in one object.
//!
//! `serde_json::Value` keeps the last of two equal keys, so a row
//! `{"x": 1, "x": 2}` would be scored as `x = 2` while a reviewer reading
//! the request (or another parser, which may keep the first) sees `1`. The
//! control API's bodies are typed structs, which serde already refuses
//! duplicates in; prediction rows and tensors are free-form, so they are
//! read through [`StrictValue`], which names the key instead.

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// A JSON value in which no object holds the same key twice (at any depth).
#[derive(Debug, Clone, PartialEq)]
pub struct StrictValue(pub Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<StrictValue, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        StrictValue::deserialize(d).map(|v| v.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "key {} appears twice in one object",
                    crate::names::show(&key)
                )));
            }
            let StrictValue(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_given_twice_is_refused_by_name_at_any_depth() {
        let e = serde_json::from_str::<StrictValue>(r#"{"a": 1, "b": 2, "a": 3}"#).unwrap_err();
        assert!(e.to_string().contains("key \"a\" appears twice"), "{e}");
        let e = serde_json::from_str::<StrictValue>(r#"[{"x": [{"y": 1, "y": 1}]}]"#).unwrap_err();
        assert!(e.to_string().contains("key \"y\" appears twice"), "{e}");
        let text = r#"{"a": [1, 2.5, null, true, "s", {"b": {}}], "c": -3}"#;
        let v = serde_json::from_str::<StrictValue>(text).unwrap();
        assert_eq!(v.0, serde_json::from_str::<Value>(text).unwrap());
    }
}
