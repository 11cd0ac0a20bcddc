//! Token scopes (`repository:team/app:pull,push`, `registry:catalog:*`,
//! `registry:management:*`): parsing what a client asks for, and granting the part its user's
//! role allows.

use super::AccessError;
use crate::auth::jwt::Access;
use crate::identity::{registry, Action, User};

/// One requested scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `repository` or `registry`
    pub kind: String,
    /// repository name or `catalog`
    pub name: String,
    /// requested actions
    pub actions: Vec<String>,
}

/// Parses one `scope` parameter, which may hold several space-separated scopes.
pub fn parse(value: &str) -> Result<Vec<Scope>, AccessError> {
    value
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let bad = || AccessError::Invalid(format!("scope {s:?} is not type:name:actions"));
            let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
            let (name, actions) = rest.rsplit_once(':').ok_or_else(bad)?;
            if kind.is_empty() || name.is_empty() || name.len() > 255 {
                return Err(bad());
            }
            let actions: Vec<String> = actions.split(',').filter(|a| !a.is_empty()).map(str::to_string).collect();
            Ok(Scope { kind: kind.to_string(), name: name.to_string(), actions })
        })
        .collect()
}

/// The role action behind a repository scope action.
fn role_action(action: &str) -> Option<Action> {
    match action {
        "pull" => Some(Action::PullImages),
        "push" => Some(Action::PushImages),
        "delete" => Some(Action::DeleteArtifacts),
        _ => None,
    }
}

/// Splits what was asked into what the user holds (granted) and what it does not (refused).
pub fn grant(user: &User, asked: &[Scope]) -> (Vec<Access>, Vec<Access>) {
    let mut granted = vec![];
    let mut refused = vec![];
    for scope in asked {
        let (mut yes, mut no) = (vec![], vec![]);
        match scope.kind.as_str() {
            "repository" => {
                let reg = registry::of_repository(&scope.name);
                for action in &scope.actions {
                    let wanted: Vec<&str> =
                        if action == "*" { vec!["pull", "push", "delete"] } else { vec![action.as_str()] };
                    for w in wanted {
                        let held = role_action(w).is_some_and(|a| user.may(a, Some(reg)));
                        let list = if held { &mut yes } else { &mut no };
                        if !list.iter().any(|x: &String| x == w) {
                            list.push(w.to_string());
                        }
                    }
                }
            }
            "registry" if scope.name == "catalog" => {
                if user.registries.is_none() && user.may(Action::ViewImages, None) {
                    yes.push("*".to_string());
                } else {
                    no.push("*".to_string());
                }
            }
            // the management API: any user may hold the scope, and each call is checked
            // against the user's role at the time of the call
            "registry" if scope.name == "management" && scope.actions.iter().any(|a| a == "*") => {
                yes.push("*".to_string());
            }
            _ => no.extend(scope.actions.iter().cloned()),
        }
        if !yes.is_empty() {
            granted.push(Access { kind: scope.kind.clone(), name: scope.name.clone(), actions: yes });
        }
        if !no.is_empty() {
            refused.push(Access { kind: scope.kind.clone(), name: scope.name.clone(), actions: no });
        }
    }
    (granted, refused)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::identity::Role;

    fn user(role: Role, registries: Option<Vec<&str>>) -> User {
        User {
            name: "u".into(),
            role,
            registries: registries.map(|l| l.into_iter().map(String::from).collect()),
            generation: 0,
            keys: vec![],
            created_at: 0,
            created_by: "t".into(),
        }
    }

    #[test]
    fn parses_several_scopes() {
        let s = parse("repository:team/app:pull,push registry:catalog:*").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "team/app");
        assert_eq!(s[0].actions, vec!["pull", "push"]);
        assert!(parse("nonsense").is_err());
    }

    #[test]
    fn uploader_gets_push_not_pull_and_the_refusal_is_recorded() {
        let asked = parse("repository:team/app:pull,push").unwrap();
        let (yes, no) = grant(&user(Role::ImageUploader, None), &asked);
        assert_eq!(yes[0].actions, vec!["push"]);
        assert_eq!(no[0].actions, vec!["pull"]);
        let (yes, no) = grant(&user(Role::ServiceViewer, None), &asked);
        assert_eq!(yes[0].actions, vec!["pull"]);
        assert_eq!(no[0].actions, vec!["push"]);
    }

    #[test]
    fn registry_lists_limit_grants() {
        let asked = parse("repository:other/app:pull repository:team/app:*").unwrap();
        let (yes, no) = grant(&user(Role::ProjectAdmin, Some(vec!["team"])), &asked);
        assert_eq!(yes.len(), 1);
        assert_eq!(yes[0].name, "team/app");
        assert_eq!(yes[0].actions, vec!["pull", "push", "delete"]);
        assert_eq!(no[0].name, "other/app");
        let (yes, _) = grant(&user(Role::ProjectAdmin, Some(vec!["team"])), &parse("registry:catalog:*").unwrap());
        assert!(yes.is_empty());
    }
}
