//! Reading an image document (manifest, index, config, `docker save`'s `manifest.json`) as
//! Go's readers read it, or refusing it.
//!
//! Go's encoding/json, which Docker, containerd, podman, skopeo and umoci read image documents
//! with, matches an object's keys to a struct's fields without regard to case (`Layers`,
//! `LAYERS`, even `ſize` with a long s for `size`), the later of two such keys winning; serde
//! matches them exactly. A manifest with both `layers` and `Layers` is then one image for them
//! and another for rkt, under one digest. Every object rkt reads into a struct is checked for a
//! key Go would take for one of its fields but serde would not.

use serde_json::Value;

use super::types::{Document, MEDIA_DOCKER_LIST, MEDIA_OCI_INDEX};
use super::OciError;

/// Reads an image document of `shape`, refusing one Go's JSON reader would read otherwise.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
    shape: Shape,
) -> Result<T, OciError> {
    let invalid = |e: &dyn std::fmt::Display| OciError::Invalid(format!("{what} is not valid: {e}"));
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| invalid(&e))?;
    check(&value, shape).map_err(|e| invalid(&e))?;
    // From the bytes again, not from `value`: a map keeps only the last of two equal keys,
    // where serde refuses a struct field given twice.
    serde_json::from_slice(bytes).map_err(|e| invalid(&e))
}

/// Refuses documents that are both an index and a manifest (CVE-2021-41190) or whose
/// declared media type contradicts what they hold.
pub(crate) fn check_document(doc: &Document, what: &str) -> Result<(), OciError> {
    // Registries that kept old pushes still serve them; Docker 28 no longer pulls them either.
    if doc.schema_version == Some(serde_json::Value::from(1)) {
        return Err(OciError::Invalid(format!(
            "{what} is Docker schema 1, which rkt does not read: \
             copy the image again as schema 2 (skopeo copy --format v2s2)"
        )));
    }
    let is_index = doc.manifests.is_some();
    let is_manifest = doc.layers.is_some() || doc.config.is_some();
    if is_index && is_manifest {
        return Err(OciError::Invalid(format!("{what} is ambiguous: it has both manifests and layers")));
    }
    if let Some(media) = &doc.media_type {
        let says_index = media == MEDIA_OCI_INDEX || media == MEDIA_DOCKER_LIST;
        if says_index != is_index {
            return Err(OciError::Invalid(format!("{what} says it is {media} but holds the other kind")));
        }
    }
    Ok(())
}

/// What an object in an image document is, as far as rkt reads it.
#[derive(Clone, Copy)]
pub enum Shape {
    /// An image manifest or index.
    Document,
    Descriptor,
    Platform,
    ImageConfig,
    ContainerConfig,
    RootFs,
    /// `docker save`'s `manifest.json`: a list of these.
    DockerSaveEntry,
    /// The `oci-layout` file.
    Layout,
    /// A map (annotations, labels, ports, volumes): its keys are data, kept as written by both.
    Map,
    /// What rkt does not read into a struct.
    Other,
}

impl Shape {
    /// The keys serde reads, each with the shape of its value (of each element of an array).
    fn fields(self) -> &'static [(&'static str, Shape)] {
        use Shape::*;
        match self {
            Document => &[
                ("schemaVersion", Other),
                ("mediaType", Other),
                ("manifests", Descriptor),
                ("config", Descriptor),
                ("layers", Descriptor),
            ],
            Descriptor => &[
                ("mediaType", Other),
                ("digest", Other),
                ("size", Other),
                ("platform", Platform),
                ("annotations", Map),
            ],
            Platform => &[("architecture", Other), ("os", Other)],
            ImageConfig => &[
                ("architecture", Other),
                ("os", Other),
                ("variant", Other),
                ("config", ContainerConfig),
                ("rootfs", RootFs),
                ("created", Other),
                ("author", Other),
            ],
            ContainerConfig => &[
                ("User", Other),
                ("Env", Other),
                ("Entrypoint", Other),
                ("Cmd", Other),
                ("WorkingDir", Other),
                ("ExposedPorts", Map),
                ("Volumes", Map),
                ("Labels", Map),
            ],
            RootFs => &[("type", Other), ("diff_ids", Other)],
            DockerSaveEntry => &[("Config", Other), ("RepoTags", Other), ("Layers", Other)],
            Layout => &[("imageLayoutVersion", Other)],
            Map | Other => &[],
        }
    }
}

/// A key as Go compares it: ASCII case folded, and the two non-ASCII letters that fold to
/// ASCII ones (K, the Kelvin sign, and ſ, the long s).
fn fold(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '\u{212A}' => 'k',
            '\u{017F}' => 's',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Refuses a document in which Go would read a field serde does not, or another value for it.
pub fn check(value: &Value, shape: Shape) -> Result<(), String> {
    match value {
        Value::Array(items) => items.iter().try_for_each(|item| check(item, shape)),
        Value::Object(object) if !matches!(shape, Shape::Map | Shape::Other) => {
            let mut seen: Vec<(String, &str)> = Vec::new();
            for (key, inner) in object {
                let folded = fold(key);
                if let Some((_, other)) = seen.iter().find(|(f, _)| *f == folded) {
                    return Err(format!("it has both {other:?} and {key:?}, which Go's JSON reader takes for one key"));
                }
                seen.push((folded.clone(), key));
                match shape.fields().iter().find(|(field, _)| fold(field) == folded) {
                    Some((field, inner_shape)) if field == key => check(inner, *inner_shape)?,
                    Some((field, _)) => {
                        return Err(format!("it has a key {key:?}, which Go's JSON reader takes for {field:?}"));
                    }
                    None => {}
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::types::{ContainerConfig, Descriptor, DockerSaveEntry, ImageConfigFile, Platform, RootFs};

    /// The field names serde's derived code reads for `T`, as it hands them to a deserializer.
    fn serde_fields<T: serde::de::DeserializeOwned>() -> Vec<&'static str> {
        struct Capture;
        #[derive(Debug)]
        struct Fields(Vec<&'static str>);
        impl std::fmt::Display for Fields {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }
        impl std::error::Error for Fields {}
        impl serde::de::Error for Fields {
            fn custom<M: std::fmt::Display>(_: M) -> Self {
                Fields(Vec::new())
            }
        }
        impl<'de> serde::Deserializer<'de> for Capture {
            type Error = Fields;
            fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Fields> {
                Err(Fields(Vec::new()))
            }
            fn deserialize_struct<V: serde::de::Visitor<'de>>(
                self,
                _: &'static str,
                fields: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Fields> {
                Err(Fields(fields.to_vec()))
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
                option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
                ignored_any
            }
        }
        match T::deserialize(Capture) {
            Err(Fields(fields)) => fields,
            Ok(_) => unreachable!("nothing deserializes from Capture"),
        }
    }

    #[test]
    fn the_shapes_name_the_fields_serde_reads() {
        let names = |shape: Shape| -> Vec<&str> { shape.fields().iter().map(|(name, _)| *name).collect() };
        assert_eq!(names(Shape::Document), serde_fields::<Document>());
        assert_eq!(names(Shape::Descriptor), serde_fields::<Descriptor>());
        assert_eq!(names(Shape::Platform), serde_fields::<Platform>());
        assert_eq!(names(Shape::ImageConfig), serde_fields::<ImageConfigFile>());
        assert_eq!(names(Shape::ContainerConfig), serde_fields::<ContainerConfig>());
        assert_eq!(names(Shape::RootFs), serde_fields::<RootFs>());
        assert_eq!(names(Shape::DockerSaveEntry), serde_fields::<DockerSaveEntry>());
    }

    fn checked(text: &str, shape: Shape) -> Result<(), String> {
        check(&serde_json::from_str(text).unwrap(), shape)
    }

    #[test]
    fn keys_go_folds_onto_a_field_are_refused() {
        assert!(checked(r#"{"layers":[],"config":{"digest":"x"}}"#, Shape::Document).is_ok());
        assert!(checked(r#"{"layers":[],"Layers":[]}"#, Shape::Document).is_err());
        assert!(checked(r#"{"LAYERS":[]}"#, Shape::Document).is_err());
        assert!(checked(r#"{"layers":[{"digest":"a","ſize":3}]}"#, Shape::Document).is_err());
        assert!(checked(r#"{"config":{"Cmd":["a"],"cmd":["b"]}}"#, Shape::ImageConfig).is_err());
        assert!(checked(r#"{"config":{"\u212Aey":1}}"#, Shape::ImageConfig).is_ok(), "no field of that name");
        assert!(checked(r#"[{"Config":"c","layers":[]}]"#, Shape::DockerSaveEntry).is_err());
        // Map keys are data: both readers keep them as written.
        assert!(checked(r#"{"config":{"Labels":{"a":"1","A":"2"}}}"#, Shape::ImageConfig).is_ok());
        assert!(checked(r#"{"annotations":{"X":"1","x":"2"},"digest":"d"}"#, Shape::Descriptor).is_ok());
        // Keys rkt does not read may come in any case, but not twice.
        assert!(checked(r#"{"history":[],"History":[]}"#, Shape::ImageConfig).is_err());
        assert!(checked(r#"{"Subject":{}}"#, Shape::Document).is_ok());
    }
}
