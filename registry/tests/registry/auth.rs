//! Authentication against a registry that demands it: basic (htpasswd) and bearer tokens from
//! a token server (the registry's `auth: token:`), both obtained with credentials and handed in.

use strata_registry::{Auth, Connection, PullOptions, RegistryError};

use crate::server::{Access, PASSWORD, USER};
use crate::token::TokenServer;
use crate::{World, assert_exports, pull_options, push_options, single};

fn connection(auth: Auth) -> Connection {
    Connection::default().with_auth(auth).with_insecure(true)
}

fn credentials() -> Auth {
    Auth::Basic {
        username: USER.into(),
        password: PASSWORD.into(),
    }
}

fn pull_with(auth: Auth) -> PullOptions {
    pull_options().with_connection(connection(auth))
}

/// Checks that `world`'s registry refuses anonymous push and pull and that [`credentials`]
/// get an image through both; returns the reference pushed.
fn refuses_anonymous_and_admits_credentials(world: &World) -> String {
    let image = single("auth", 5, 64 << 10);
    world.import(&image, "auth");
    let reference = world.reference("private/auth:1");
    let err = RegistryError::from(world.push("auth", &reference).unwrap_err());
    assert!(matches!(err, RegistryError::Registry { .. }), "{err}");

    let push = push_options().with_connection(connection(credentials()));
    world.source.push("auth", &reference, &push).unwrap();
    let target = world.store("target");
    let err = RegistryError::from(target.pull(&reference, &pull_options()).unwrap_err());
    assert!(matches!(err, RegistryError::Registry { .. }), "{err}");
    assert!(target.images().unwrap().is_empty());
    target.pull(&reference, &pull_with(credentials())).unwrap();
    assert_exports(&target, &reference, &image);
    reference
}

#[test]
fn basic_auth_is_required_and_used() {
    let Some(world) = World::with_access(Access::Basic) else {
        return;
    };
    refuses_anonymous_and_admits_credentials(&world);
}

#[test]
fn bearer_tokens_from_a_token_server_are_required_and_used() {
    let Some(tokens) = TokenServer::start_if_installed() else {
        return;
    };
    let realm = tokens.realm();
    let cert = tokens.cert();
    let access = Access::Token {
        realm: &realm,
        cert: &cert,
    };
    let Some(world) = World::with_access(access) else {
        return;
    };
    let reference = refuses_anonymous_and_admits_credentials(&world);
    // Credentials were traded for tokens (push, pull), never sent to the registry itself.
    assert!(tokens.issued() >= 2, "{} tokens issued", tokens.issued());

    // A token handed in (`--token`) is used as is.
    let granted = Auth::Bearer {
        token: tokens.token("repository:private/auth:pull"),
    };
    let handed = world.store("handed");
    handed.pull(&reference, &pull_with(granted)).unwrap();

    // The registry checks what a token grants: one for another repository is refused.
    let elsewhere = Auth::Bearer {
        token: tokens.token("repository:private/other:pull"),
    };
    let refused = world.store("refused");
    let err = RegistryError::from(refused.pull(&reference, &pull_with(elsewhere)).unwrap_err());
    assert!(matches!(err, RegistryError::Registry { .. }), "{err}");
    assert!(err.to_string().contains(&reference), "{err}");
    assert!(refused.images().unwrap().is_empty());
}
