//! Image names as users type them: `name[:version][,label=value]…`, as appc's discovery parses them.

use super::ident::is_ac_identifier;
use super::NameValue;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppString {
    pub name: String,
    pub labels: Vec<NameValue>,
}

impl AppString {
    pub fn parse(s: &str) -> Result<Self, String> {
        let first_comma = s.find(',');
        let first_colon = s.find(':');
        if let (Some(colon), Some(comma)) = (first_colon, first_comma) {
            if colon > comma {
                return Err(format!("malformed image name {s:?}: a colon may appear only right after the name"));
            }
        }
        if s.matches(':').count() > 1 {
            return Err(format!("malformed image name {s:?}: a colon may appear at most once"));
        }
        let mut parts = s.split(',');
        let head = parts.next().unwrap_or_default();
        let (name, version) = match head.split_once(':') {
            Some((n, v)) => (n, Some(v)),
            None => (head, None),
        };
        if !is_ac_identifier(name) {
            return Err(format!("{s:?} is not a valid image name: {name:?} is not an AC identifier"));
        }
        let mut labels: Vec<NameValue> = Vec::new();
        let mut add = |label: &str, value: &str| {
            if label == "name" {
                return Err(format!("malformed image name {s:?}: name cannot be a label"));
            }
            if !is_ac_identifier(label) {
                return Err(format!("malformed image name {s:?}: bad label name {label:?}"));
            }
            if labels.iter().any(|l| l.name == label) {
                return Err(format!("malformed image name {s:?}: label {label} appears more than once"));
            }
            labels.push(NameValue { name: label.to_string(), value: value.to_string() });
            Ok(())
        };
        if let Some(v) = version {
            add("version", v)?;
        }
        for part in parts {
            let Some((label, value)) = part.split_once('=') else {
                return Err(format!("malformed image name {s:?}: {part:?} is not label=value"));
            };
            add(label, value)?;
        }
        Ok(AppString { name: name.to_string(), labels })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appc_parse_cases() {
        let a = AppString::parse("example.com/reduce-worker:1.0.0").unwrap();
        assert_eq!(a.labels, vec![NameValue { name: "version".into(), value: "1.0.0".into() }]);
        let a = AppString::parse("example.com/app:1.2.3,special=!*'();@&+$/?#[],channel=beta").unwrap();
        assert_eq!(a.labels[1].value, "!*'();@&+$/?#[]");
        for bad in [
            "not an app name",
            "example.com/garbage%8 939",
            "foo.com/bar,channel=alpha,dog=woof,channel=beta",
            "example.com/app,channel=beta:1.2.3",
            "example.com/app:3.2.1,channel=beta:1.2.3",
            "example.com/app:3.2.1,version=1.2.3",
        ] {
            assert!(AppString::parse(bad).is_err(), "{bad}");
        }
    }
}
