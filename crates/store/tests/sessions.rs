//! The web portal's sessions and second factors on both backends: a session is answered
//! only while live (idle and absolute ends), a request moves the idle end on but never past
//! the absolute end, a replacement rotates the id exactly once (also when two race), ended
//! and purged sessions are gone, refusals change nothing, and a TOTP time step is accepted
//! once.

mod common;

use std::sync::Arc;

use guoku_store::Store;
use guoku_store::access::{NewUser, UserId};
use guoku_store::sessions::{NewSession, SessionError, SessionStage};

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$SECRETHASHVALUE";
const T0: u64 = 1_800_000_000;

async fn user(store: &Store, login: &str) -> UserId {
    let new = NewUser {
        login: login.into(),
        display_name: login.into(),
        password_hash: HASH.into(),
    };
    store
        .access()
        .create_user(new, "test", T0)
        .await
        .unwrap()
        .id
}

fn session(id: u8, user: UserId, stage: SessionStage, idle: u64, life: u64) -> NewSession {
    NewSession {
        id_sha256: [id; 32],
        user,
        stage,
        csrf_token: [id ^ 0xff; 32],
        created_at: T0,
        idle_until: T0 + idle,
        expires_at: T0 + life,
    }
}

both_backends!(a_session_is_answered_only_while_live, |store| {
    let sessions = store.sessions();
    let alice = user(store, "alice").await;
    sessions
        .create(&session(1, alice, SessionStage::SignedIn, 900, 28_800))
        .await
        .unwrap();

    let got = sessions.get(&[1; 32], T0).await.unwrap().unwrap();
    assert_eq!(got.user, alice);
    assert_eq!(got.stage, SessionStage::SignedIn);
    assert_eq!(got.csrf_token, [0xfe; 32]);
    assert_eq!((got.created_at, got.last_seen_at), (T0, T0));
    assert_eq!((got.idle_until, got.expires_at), (T0 + 900, T0 + 28_800));
    assert!(sessions.get(&[9; 32], T0).await.unwrap().is_none());

    // Idle: live up to the last second before the idle end, not at it.
    assert!(sessions.get(&[1; 32], T0 + 899).await.unwrap().is_some());
    assert!(sessions.get(&[1; 32], T0 + 900).await.unwrap().is_none());
    assert!(
        sessions
            .touch(&[1; 32], T0 + 900, 900)
            .await
            .unwrap()
            .is_none(),
        "a session idle too long is not revived by a request"
    );

    // A request moves the idle end on, never back, never past the absolute end.
    let mut t = T0;
    sessions
        .create(&session(2, alice, SessionStage::SignedIn, 900, 28_800))
        .await
        .unwrap();
    while t + 600 < T0 + 28_800 {
        t += 600;
        let touched = sessions.touch(&[2; 32], t, 900).await.unwrap().unwrap();
        assert_eq!(touched.last_seen_at, t);
        assert_eq!(touched.idle_until, (t + 900).min(T0 + 28_800));
    }
    let back = sessions
        .touch(&[2; 32], t - 300, 60)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.last_seen_at, t, "the last request never moves back");
    assert_eq!(back.idle_until, (t + 900).min(T0 + 28_800));
    assert!(
        sessions.get(&[2; 32], T0 + 28_800).await.unwrap().is_none(),
        "the absolute end holds however busy the session"
    );
    assert!(
        sessions
            .touch(&[2; 32], T0 + 28_800, 900)
            .await
            .unwrap()
            .is_none()
    );

    // Purging deletes what is no longer live, bounded.
    sessions
        .create(&session(3, alice, SessionStage::SignedIn, 900, 28_800))
        .await
        .unwrap();
    assert!(matches!(
        sessions.purge_expired(T0, 0).await,
        Err(SessionError::InvalidArgument(_))
    ));
    assert_eq!(sessions.purge_expired(T0 + 1_000, 1).await.unwrap(), 1);
    assert_eq!(sessions.purge_expired(T0 + 1_000, 100).await.unwrap(), 1);
    assert_eq!(sessions.purge_expired(T0 + 1_000, 100).await.unwrap(), 0);
    let left = sessions.sessions_of(alice, T0 + 1_000).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id_sha256, [2; 32], "the busy session stays");
});

both_backends!(refusals_change_nothing, |store| {
    let sessions = store.sessions();
    let alice = user(store, "alice").await;
    // A user who is not stored.
    assert!(matches!(
        sessions
            .create(&session(
                1,
                UserId(999),
                SessionStage::SignedIn,
                900,
                28_800
            ))
            .await,
        Err(SessionError::NotFound { .. })
    ));
    // Instants out of order.
    let mut bad = session(1, alice, SessionStage::SignedIn, 900, 28_800);
    bad.idle_until = bad.expires_at + 1;
    assert!(matches!(
        sessions.create(&bad).await,
        Err(SessionError::InvalidArgument(_))
    ));
    assert!(sessions.get(&[1; 32], T0).await.unwrap().is_none());

    // The same id twice: the first stays as it was.
    sessions
        .create(&session(1, alice, SessionStage::SecondFactor, 300, 300))
        .await
        .unwrap();
    let err = sessions
        .create(&session(1, alice, SessionStage::SignedIn, 900, 28_800))
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::Duplicate), "{err:?}");
    assert!(err.is_retryable(), "a fresh id may succeed");
    let kept = sessions.get(&[1; 32], T0).await.unwrap().unwrap();
    assert_eq!(kept.stage, SessionStage::SecondFactor);
    assert_eq!(kept.expires_at, T0 + 300);

    // A second factor for a user who is not stored, or too large.
    assert!(matches!(
        sessions.put_totp(UserId(999), vec![1; 40], T0).await,
        Err(SessionError::NotFound { .. })
    ));
    assert!(matches!(
        sessions.put_totp(alice, vec![1; 513], T0).await,
        Err(SessionError::InvalidArgument(_))
    ));
    assert!(matches!(
        sessions.put_totp(alice, Vec::new(), T0).await,
        Err(SessionError::InvalidArgument(_))
    ));
    assert!(sessions.totp(alice).await.unwrap().is_none());
});

both_backends!(replacing_rotates_the_id_once, |store| {
    let sessions = store.sessions();
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    sessions
        .create(&session(1, alice, SessionStage::SecondFactor, 300, 300))
        .await
        .unwrap();

    // Not bob's session to replace; nothing changes.
    assert!(
        !sessions
            .replace(
                &[1; 32],
                T0 + 10,
                &session(2, bob, SessionStage::SignedIn, 900, 28_800)
            )
            .await
            .unwrap()
    );
    assert!(sessions.get(&[1; 32], T0 + 10).await.unwrap().is_some());
    assert!(sessions.get(&[2; 32], T0 + 10).await.unwrap().is_none());

    // Two replacements race: exactly one wins, the pending session is gone.
    let store = Arc::new(store.clone());
    let mut tasks = Vec::new();
    for id in [3u8, 4] {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut new = session(id, alice, SessionStage::SignedIn, 900, 28_800);
            new.created_at = T0 + 10;
            new.idle_until = T0 + 910;
            new.expires_at = T0 + 28_810;
            store
                .sessions()
                .replace(&[1; 32], T0 + 10, &new)
                .await
                .unwrap()
        }));
    }
    let mut won = 0;
    for task in tasks {
        won += u32::from(task.await.unwrap());
    }
    assert_eq!(won, 1, "one pending session gives one signed-in session");
    let sessions = store.sessions();
    assert!(sessions.get(&[1; 32], T0 + 10).await.unwrap().is_none());
    let live = sessions.sessions_of(alice, T0 + 10).await.unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].stage, SessionStage::SignedIn);
    assert!(live[0].id_sha256 == [3; 32] || live[0].id_sha256 == [4; 32]);

    // An expired pending session cannot be replaced.
    sessions
        .create(&session(5, alice, SessionStage::SecondFactor, 300, 300))
        .await
        .unwrap();
    assert!(
        !sessions
            .replace(
                &[5; 32],
                T0 + 300,
                &session(6, alice, SessionStage::SignedIn, 900, 28_800)
            )
            .await
            .unwrap()
    );

    // Ending: one, then all of a user's.
    assert!(sessions.end(&live[0].id_sha256).await.unwrap());
    assert!(!sessions.end(&live[0].id_sha256).await.unwrap());
    for id in [7u8, 8] {
        sessions
            .create(&session(id, alice, SessionStage::SignedIn, 900, 28_800))
            .await
            .unwrap();
    }
    sessions
        .create(&session(9, bob, SessionStage::SignedIn, 900, 28_800))
        .await
        .unwrap();
    assert_eq!(sessions.end_all(alice).await.unwrap(), 3, "7, 8 and 5");
    assert!(sessions.sessions_of(alice, T0).await.unwrap().is_empty());
    assert_eq!(sessions.sessions_of(bob, T0).await.unwrap().len(), 1);
});

both_backends!(a_totp_step_is_accepted_once, |store| {
    let sessions = store.sessions();
    let alice = user(store, "alice").await;
    sessions.put_totp(alice, vec![7; 40], T0).await.unwrap();
    let got = sessions.totp(alice).await.unwrap().unwrap();
    assert_eq!(
        (got.sealed.clone(), got.enrolled_at, got.last_step),
        (vec![7; 40], T0, 0)
    );
    assert!(
        !format!("{got:?}").contains("7, 7"),
        "Debug leaves the secret out"
    );

    assert!(sessions.use_totp_step(alice, 100).await.unwrap());
    assert!(!sessions.use_totp_step(alice, 100).await.unwrap(), "used");
    assert!(!sessions.use_totp_step(alice, 99).await.unwrap(), "earlier");
    assert!(sessions.use_totp_step(alice, 101).await.unwrap());

    // Re-enrolling replaces the secret and keeps the last step.
    sessions.put_totp(alice, vec![8; 40], T0 + 5).await.unwrap();
    let got = sessions.totp(alice).await.unwrap().unwrap();
    assert_eq!(
        (got.sealed, got.enrolled_at, got.last_step),
        (vec![8; 40], T0 + 5, 101)
    );
    assert!(!sessions.use_totp_step(alice, 101).await.unwrap());

    // Racing uses of one step: exactly one is accepted.
    let store = Arc::new(store.clone());
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.sessions().use_totp_step(alice, 200).await.unwrap()
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        accepted += u32::from(task.await.unwrap());
    }
    assert_eq!(accepted, 1);
    // A user with no second factor has no step to use.
    let bob = user(&store, "bob").await;
    assert!(!store.sessions().use_totp_step(bob, 1).await.unwrap());
});
