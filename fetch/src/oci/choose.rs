//! Which image of an OCI layout or a `docker save` archive a reference names.

use super::OciError;

/// An image of a layout or archive, and the reference that named it, if one did.
pub(super) struct Chosen<'a, T> {
    pub item: &'a T,
    pub named: Option<&'a str>,
}

/// The image `reference` names among a layout's or an archive's `items`: by a name `matches`,
/// by its place (`@N`, from 0, as skopeo reads it), or the only one there is. `place` says
/// where, and how a user names an image there.
pub(super) fn choose<'a, T>(
    items: &'a [T],
    reference: Option<&'a str>,
    matches: impl Fn(&T, &str) -> bool,
    names: impl Fn(&'a T) -> Vec<&'a str>,
    (place, syntax): (&str, &str),
) -> Result<Chosen<'a, T>, OciError> {
    let index = reference.and_then(|r| r.strip_prefix('@')).and_then(|n| n.parse::<usize>().ok());
    let found = match (reference, index) {
        (_, Some(n)) => items.get(n).map(|item| Chosen { item, named: None }),
        (Some(r), None) => items.iter().find(|i| matches(i, r)).map(|item| Chosen { item, named: Some(r) }),
        (None, _) if items.len() == 1 => Some(Chosen { item: &items[0], named: None }),
        (None, _) => None,
    };
    found.ok_or_else(|| {
        let has = items.iter().flat_map(&names).collect::<Vec<_>>().join(", ");
        OciError::Invalid(match reference {
            Some(r) if index.is_some() => {
                format!("no image {r:?} in the {place}: it holds {} (it has: {has})", items.len())
            }
            Some(r) => format!("no image {r:?} in the {place} (it has: {has})"),
            None => {
                format!("the {place} holds {} images: name one ({syntax} or PATH:@INDEX; it has: {has})", items.len())
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick<'a>(items: &'a [(&'a str, u8)], reference: Option<&'a str>) -> Result<(u8, Option<&'a str>), String> {
        choose(items, reference, |i, r| i.0 == r, |i| vec![i.0], ("layout", "oci:PATH:REF"))
            .map(|c| (c.item.1, c.named))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn by_name_by_place_or_the_only_one() {
        let two = [("a", 1), ("b", 2)];
        assert_eq!(pick(&two, Some("b")), Ok((2, Some("b"))));
        assert_eq!(pick(&two, Some("@0")), Ok((1, None)));
        assert_eq!(pick(&two, Some("@1")), Ok((2, None)));
        assert_eq!(pick(&two[..1], None), Ok((1, None)));
        let err = pick(&two, None).unwrap_err();
        assert!(
            err.contains("the layout holds 2 images: name one (oci:PATH:REF or PATH:@INDEX; it has: a, b)"),
            "{err}"
        );
        let err = pick(&two, Some("@2")).unwrap_err();
        assert!(err.contains("no image \"@2\" in the layout: it holds 2 (it has: a, b)"), "{err}");
        let err = pick(&two, Some("c")).unwrap_err();
        assert!(err.contains("no image \"c\" in the layout (it has: a, b)"), "{err}");
        assert!(pick(&[], None).unwrap_err().contains("holds 0 images"));
    }
}
