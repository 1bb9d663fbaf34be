//! `--user` / the image's `User` resolved as Docker resolves it, through the
//! image's own `/etc/passwd` and `/etc/group`: `name`, `uid`, `name:group`,
//! `uid:gid`. A name the files lack is an error; a number need not be
//! listed. Without an explicit group the user's primary group applies, and
//! the groups listing the user by name become supplementary groups.

/// The ids a container's process runs with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// From passwd, for `HOME` (runc sets it when the env lacks it).
    pub home: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolves `spec` (empty = root) against the image's passwd and group
/// files (empty when the image has none).
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<ResolvedUser, String> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let users = parse_passwd(passwd);
    let groups = parse_group(group);
    let mut resolved = ResolvedUser::default();
    let mut name = None;
    if user_part.is_empty() {
        if let Some(root) = users.iter().find(|u| u.uid == 0) {
            resolved.home = Some(root.home.clone());
            name = Some(root.name.clone());
        }
    } else if let Ok(uid) = user_part.parse::<u32>() {
        resolved.uid = uid;
        if let Some(entry) = users.iter().find(|u| u.uid == uid) {
            resolved.gid = entry.gid;
            resolved.home = Some(entry.home.clone());
            name = Some(entry.name.clone());
        }
    } else {
        let entry = users.iter().find(|u| u.name == user_part).ok_or_else(|| {
            format!("unable to find user {user_part}: no matching entries in passwd file")
        })?;
        resolved.uid = entry.uid;
        resolved.gid = entry.gid;
        resolved.home = Some(entry.home.clone());
        name = Some(entry.name.clone());
    }
    match group_part {
        Some("") => {
            return Err(format!(
                "invalid user `{spec}`: the group after `:` is empty"
            ))
        }
        Some(g) => {
            resolved.gid = match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => {
                    groups
                        .iter()
                        .find(|e| e.name == g)
                        .ok_or_else(|| {
                            format!("unable to find group {g}: no matching entries in group file")
                        })?
                        .gid
                }
            };
        }
        None => {
            if let Some(name) = &name {
                let mut extra: Vec<u32> = groups
                    .iter()
                    .filter(|g| g.members.iter().any(|m| m == name))
                    .map(|g| g.gid)
                    .filter(|gid| *gid != resolved.gid)
                    .collect();
                extra.sort_unstable();
                extra.dedup();
                resolved.additional_gids = extra;
            }
        }
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        nginx:x:101:101:nginx:/var/cache/nginx:/sbin/nologin\n\
        app:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nnginx:x:101:\napp:x:1000:\nextra:x:2000:app,other\nwww:x:33:\n";

    #[test]
    fn empty_is_root_with_roots_home() {
        let u = resolve("", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid), (0, 0));
        assert_eq!(u.home.as_deref(), Some("/root"));
    }

    #[test]
    fn a_name_takes_its_primary_and_supplementary_groups() {
        let u = resolve("app", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(u.additional_gids, vec![2000]);
        assert_eq!(u.home.as_deref(), Some("/home/app"));
    }

    #[test]
    fn an_explicit_group_replaces_them() {
        let u = resolve("app:www", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 33));
        assert!(u.additional_gids.is_empty());
        let u = resolve("nginx:4242", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid), (101, 4242));
    }

    #[test]
    fn numbers_need_no_entry() {
        let u = resolve("4000", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid), (4000, 0));
        let u = resolve("4000:4001", "", "").unwrap();
        assert_eq!((u.uid, u.gid), (4000, 4001));
        // A listed uid takes its passwd gid.
        assert_eq!(resolve("101", PASSWD, GROUP).unwrap().gid, 101);
    }

    #[test]
    fn unknown_names_are_errors_docker_words() {
        let err = resolve("ghost", PASSWD, GROUP).unwrap_err();
        assert_eq!(
            err,
            "unable to find user ghost: no matching entries in passwd file"
        );
        assert!(resolve("app:ghosts", PASSWD, GROUP).is_err());
        assert!(resolve("app:", PASSWD, GROUP).is_err());
        assert!(resolve("app", "", "").is_err());
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let passwd = "# comment\nbroken\napp:x:notanumber:1::/:/bin/sh\nok:x:5:6::/h:/bin/sh\n";
        assert!(resolve("app", passwd, "").is_err());
        assert_eq!(resolve("ok", passwd, "").unwrap().uid, 5);
    }
}
