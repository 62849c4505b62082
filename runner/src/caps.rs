//! Linux capabilities by name, and the set an app keeps.

/// Capability names in kernel order (CAP_CHOWN is 0).
pub const NAMES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The set appc and rkt give an app unless told otherwise.
pub const DEFAULT_SET: &[&str] = &[
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_KILL",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETUID",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETFCAP",
    "CAP_SYS_CHROOT",
];

/// A capability's number from its name, with or without the `CAP_` prefix, in any case.
pub fn number(name: &str) -> Option<u32> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
    NAMES.iter().position(|n| *n == full).map(|i| i as u32)
}

/// The set an app keeps: `retain` alone if given, else the default set less `remove`.
pub fn app_set(retain: Option<&[String]>, remove: &[String]) -> Result<Vec<u32>, String> {
    let parse = |names: &[String]| -> Result<Vec<u32>, String> {
        names.iter().map(|n| number(n).ok_or_else(|| format!("unknown capability {n:?}"))).collect()
    };
    let mut set = match retain {
        Some(r) => parse(r)?,
        None => DEFAULT_SET.iter().map(|n| number(n).expect("default names are known")).collect(),
    };
    let removed = parse(remove)?;
    set.retain(|c| !removed.contains(c));
    set.sort_unstable();
    set.dedup();
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_sets() {
        assert_eq!(number("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(number("net_raw"), Some(13));
        assert_eq!(number("CAP_NOPE"), None);
        let default = app_set(None, &[]).unwrap();
        assert_eq!(default.len(), DEFAULT_SET.len());
        let less = app_set(None, &["CAP_NET_RAW".into()]).unwrap();
        assert!(!less.contains(&13));
        assert_eq!(app_set(Some(&["CAP_KILL".into()]), &[]).unwrap(), vec![5]);
        assert!(app_set(Some(&["bogus".into()]), &[]).is_err());
    }
}
