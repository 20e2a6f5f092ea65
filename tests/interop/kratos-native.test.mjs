// Interop suite: drives a running Portcullis server with the official Ory
// Kratos JS SDK (@ory/kratos-client, pinned in package.json) and checks that
// it behaves like Kratos v1.3.x on the native (API) self-service flows and
// the admin identity/session APIs.
//
// Run with PORTCULLIS_PUBLIC_URL and PORTCULLIS_ADMIN_URL set, see README.md.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import bcrypt from 'bcryptjs';
import { Configuration, FrontendApi, IdentityApi } from '@ory/kratos-client';

// ---------------------------------------------------------------------------
// Setup
// ---------------------------------------------------------------------------

const PUBLIC_URL = process.env.PORTCULLIS_PUBLIC_URL;
const ADMIN_URL = process.env.PORTCULLIS_ADMIN_URL;
if (!PUBLIC_URL || !ADMIN_URL) {
  throw new Error(
    'PORTCULLIS_PUBLIC_URL and PORTCULLIS_ADMIN_URL must be set ' +
      '(e.g. http://127.0.0.1:4433 and http://127.0.0.1:4434); ' +
      `got PORTCULLIS_PUBLIC_URL=${PUBLIC_URL ?? '<unset>'} PORTCULLIS_ADMIN_URL=${ADMIN_URL ?? '<unset>'}`,
  );
}

// proxy:false keeps axios from routing loopback traffic through an
// HTTP(S)_PROXY from the environment; the timeout turns a hung server into a
// failing test instead of a hung run.
const baseOptions = { timeout: 15_000, proxy: false };
const frontend = new FrontendApi(new Configuration({ basePath: PUBLIC_URL, baseOptions }));
// The admin client adds the /admin/... prefix itself.
const admin = new IdentityApi(new Configuration({ basePath: ADMIN_URL, baseOptions }));

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// Message ids from the Kratos text catalogue (shared/reference/kratos/message-ids.tsv).
const MSG = {
  SETTINGS_SAVED: 1050001,
  REQUIRED: 4000002,
  INVALID_CREDENTIALS: 4000006,
  DUPLICATE_CREDENTIALS: 4000007,
  PASSWORD_MIN_LENGTH: 4000032,
};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/** A fresh, lower-case e-mail address so that a reused server never collides. */
function uniqueEmail(tag) {
  return `interop-${tag}-${randomUUID()}@example.com`;
}

/** A long random password that passes any length/similarity policy. */
function strongPassword() {
  return `Pc!${randomBytes(15).toString('base64url')}9x`;
}

/** Describes an axios error with its HTTP status and body, for assertion messages. */
function describeError(err) {
  if (!err?.response) return String(err?.stack ?? err);
  return `HTTP ${err.response.status} ${JSON.stringify(err.response.data)}`;
}

/**
 * Awaits an SDK call that must succeed with `status`; returns the axios
 * response. On failure the message carries the server's status and body.
 */
async function expectOk(promise, status = 200) {
  let res;
  try {
    res = await promise;
  } catch (err) {
    assert.fail(`expected HTTP ${status}, request failed: ${describeError(err)}`);
  }
  assert.equal(res.status, status, `expected HTTP ${status}, got ${res.status}: ${JSON.stringify(res.data)}`);
  return res;
}

/**
 * Awaits an SDK call that must fail with HTTP `status`; returns the parsed
 * response body.
 */
async function expectStatus(promise, status) {
  let res;
  try {
    res = await promise;
  } catch (err) {
    if (!err?.response) throw err; // network error etc.: not an HTTP answer
    assert.equal(err.response.status, status, `expected HTTP ${status}, got ${describeError(err)}`);
    return err.response.data;
  }
  assert.fail(`expected HTTP ${status}, but the request succeeded with HTTP ${res.status}: ${JSON.stringify(res.data)}`);
}

/** Fails a step clearly when an earlier step in the same suite did not produce its state. */
function need(value, what) {
  assert.ok(value, `precondition missing: ${what} (an earlier step of this suite failed)`);
  return value;
}

function findNode(flow, name) {
  return flow.ui.nodes.find((n) => n.attributes?.name === name);
}

function nodeMessageIds(flow, name) {
  const node = findNode(flow, name);
  assert.ok(node, `flow has no node named ${name}`);
  assert.ok(Array.isArray(node.messages), `node ${name} must have a messages array`);
  return node.messages.map((m) => m.id);
}

/** Every message id on the flow: ui.messages plus all node messages. */
function allMessageIds(flow) {
  const ids = (flow.ui.messages ?? []).map((m) => m.id);
  for (const node of flow.ui.nodes) ids.push(...(node.messages ?? []).map((m) => m.id));
  return ids;
}

/** Extracts the page_token of the rel="next" entry of an RFC 8288 Link header, or null. */
function nextPageToken(linkHeader) {
  if (!linkHeader) return null;
  for (const part of linkHeader.split(',')) {
    const m = part.match(/<([^>]*)>\s*;\s*rel="?next"?/);
    if (m) {
      const url = new URL(m[1], ADMIN_URL);
      return url.searchParams.get('page_token');
    }
  }
  return null;
}

/** Registers a new identity through a native registration flow; returns the success body. */
async function registerNative({ email, password, first = 'Ada', last = 'Lovelace' }) {
  const { data: flow } = await expectOk(frontend.createNativeRegistrationFlow());
  const { data } = await expectOk(
    frontend.updateRegistrationFlow({
      flow: flow.id,
      updateRegistrationFlowBody: { method: 'password', password, traits: { email, name: { first, last } } },
    }),
  );
  return data;
}

/** Submits a registration that must be rejected; returns the 400 flow body. */
async function registerExpectingValidationError(traits, password) {
  const { data: flow } = await expectOk(frontend.createNativeRegistrationFlow());
  const body = await expectStatus(
    frontend.updateRegistrationFlow({
      flow: flow.id,
      updateRegistrationFlowBody: { method: 'password', password, traits },
    }),
    400,
  );
  assert.equal(body.id, flow.id, 'a 400 on submit returns the same flow, now carrying messages');
  assert.equal(body.type, 'api');
  return body;
}

/** Logs in through a native login flow; returns the success body ({session, session_token}). */
async function loginNative(identifier, password) {
  const { data: flow } = await expectOk(frontend.createNativeLoginFlow());
  const { data } = await expectOk(
    frontend.updateLoginFlow({ flow: flow.id, updateLoginFlowBody: { method: 'password', identifier, password } }),
  );
  assert.equal(typeof data.session_token, 'string', 'native login returns a session_token');
  assert.ok(data.session_token.length > 0);
  assert.equal(data.session.active, true);
  return data;
}

/** Asserts that whoami rejects the token as an inactive session. */
async function expectSessionInactive(sessionToken) {
  const body = await expectStatus(frontend.toSession({ xSessionToken: sessionToken }), 401);
  assert.equal(body.error?.id, 'session_inactive', `whoami error body: ${JSON.stringify(body)}`);
}

/** Creates an identity through the admin API with a bcrypt-hashed password; returns it. */
async function adminCreateIdentity({ email, password, first = 'Grace', last = 'Hopper' }) {
  const hashed_password = bcrypt.hashSync(password, 10);
  const { data } = await expectOk(
    admin.createIdentity({
      createIdentityBody: {
        schema_id: 'default',
        traits: { email, name: { first, last } },
        credentials: { password: { config: { hashed_password } } },
      },
    }),
    201,
  );
  assert.match(data.id, UUID_RE);
  return data;
}

/** Walks GET /admin/sessions via Link rel="next" until `sessionId` is found (bounded). */
async function adminSessionsContain(sessionId) {
  let pageToken;
  for (let page = 0; page < 500; page++) {
    const res = await expectOk(admin.listSessions({ pageSize: 250, pageToken }));
    assert.ok(Array.isArray(res.data), 'GET /admin/sessions returns a bare JSON array');
    if (res.data.some((s) => s.id === sessionId)) return true;
    pageToken = nextPageToken(res.headers.link);
    if (!pageToken) return false;
  }
  assert.fail('GET /admin/sessions pagination did not end after 500 pages');
}

// ---------------------------------------------------------------------------
// 1. Native self-service: registration → whoami → login → settings → logout
// ---------------------------------------------------------------------------

describe('native self-service flows', () => {
  const email = uniqueEmail('native');
  const password = strongPassword();
  const newPassword = strongPassword();
  const state = {};

  it('creates a native registration flow of type api with password nodes and no csrf_token', async () => {
    const { data: flow } = await expectOk(frontend.createNativeRegistrationFlow());
    assert.match(flow.id, UUID_RE);
    assert.equal(flow.type, 'api');
    assert.ok(
      flow.ui.action.includes(`/self-service/registration?flow=${flow.id}`),
      `ui.action should point at the submit endpoint, got ${flow.ui.action}`,
    );
    assert.equal(flow.ui.method, 'POST');
    assert.ok(Array.isArray(flow.ui.nodes));

    const emailNode = findNode(flow, 'traits.email');
    assert.ok(emailNode, 'registration flow has a traits.email node');
    assert.equal(emailNode.group, 'default');
    assert.equal(emailNode.type, 'input');
    assert.equal(emailNode.attributes.node_type, 'input');
    assert.deepEqual(emailNode.messages, []);
    assert.equal(typeof emailNode.meta, 'object');

    const passwordNode = findNode(flow, 'password');
    assert.ok(passwordNode, 'registration flow has a password node');
    assert.equal(passwordNode.group, 'password');
    assert.equal(passwordNode.attributes.node_type, 'input');
    assert.equal(passwordNode.attributes.type, 'password');

    const submit = flow.ui.nodes.find(
      (n) => n.attributes?.name === 'method' && n.attributes?.type === 'submit' && n.attributes?.value === 'password',
    );
    assert.ok(submit, 'registration flow has a submit node method=password');
    assert.equal(submit.group, 'password');

    assert.equal(findNode(flow, 'csrf_token'), undefined, 'API flows carry no csrf_token node');
  });

  it('registers with a password and immediately returns an active session and a session_token', async () => {
    const data = await registerNative({ email, password, first: 'Ada', last: 'Lovelace' });
    assert.match(data.identity?.id, UUID_RE);
    assert.equal(data.identity.traits.email, email);
    assert.deepEqual(data.identity.traits.name, { first: 'Ada', last: 'Lovelace' });
    assert.equal(data.session?.active, true);
    assert.equal(data.session.identity?.id, data.identity.id);
    assert.equal(typeof data.session_token, 'string');
    assert.ok(data.session_token.length > 0);
    state.identityId = data.identity.id;
    state.registrationToken = data.session_token;
  });

  it('whoami with the registration session token returns the registered identity', async () => {
    const token = need(state.registrationToken, 'registration session token');
    const { data: session } = await expectOk(frontend.toSession({ xSessionToken: token }));
    assert.equal(session.active, true);
    assert.equal(session.identity.id, state.identityId);
    assert.equal(session.identity.traits.email, email);
  });

  it('logs in with email and password through a native login flow', async () => {
    need(state.identityId, 'registered identity');
    const { data: flow } = await expectOk(frontend.createNativeLoginFlow());
    assert.equal(flow.type, 'api');
    assert.ok(findNode(flow, 'identifier'), 'login flow has an identifier node');
    assert.equal(findNode(flow, 'csrf_token'), undefined, 'API flows carry no csrf_token node');

    const data = await loginNative(email, password);
    assert.equal(data.session.identity.id, state.identityId);
    state.loginToken = data.session_token;
  });

  it('updates profile traits through a native settings flow (state success)', async () => {
    const token = need(state.loginToken, 'login session token');
    const { data: flow } = await expectOk(frontend.createNativeSettingsFlow({ xSessionToken: token }));
    assert.equal(flow.type, 'api');
    assert.equal(flow.identity.id, state.identityId);

    const { data: updated } = await expectOk(
      frontend.updateSettingsFlow({
        flow: flow.id,
        xSessionToken: token,
        updateSettingsFlowBody: { method: 'profile', traits: { email, name: { first: 'New', last: 'Lovelace' } } },
      }),
    );
    assert.equal(updated.state, 'success');
    assert.equal(updated.identity.traits.name.first, 'New');
    assert.equal(updated.identity.traits.email, email);
    assert.ok(allMessageIds(updated).includes(MSG.SETTINGS_SAVED), 'settings success carries message 1050001');

    const { data: session } = await expectOk(frontend.toSession({ xSessionToken: token }));
    assert.equal(session.identity.traits.name.first, 'New', 'whoami reflects the updated traits');
  });

  it('changes the password through a native settings flow', async () => {
    const token = need(state.loginToken, 'login session token');
    const { data: flow } = await expectOk(frontend.createNativeSettingsFlow({ xSessionToken: token }));
    const { data: updated } = await expectOk(
      frontend.updateSettingsFlow({
        flow: flow.id,
        xSessionToken: token,
        updateSettingsFlowBody: { method: 'password', password: newPassword },
      }),
    );
    assert.equal(updated.state, 'success');
    state.passwordChanged = true;
  });

  it('rejects login with the old password with 400 and message 4000006', async () => {
    need(state.passwordChanged, 'password change');
    const { data: flow } = await expectOk(frontend.createNativeLoginFlow());
    const body = await expectStatus(
      frontend.updateLoginFlow({
        flow: flow.id,
        updateLoginFlowBody: { method: 'password', identifier: email, password },
      }),
      400,
    );
    assert.equal(body.id, flow.id, 'the 400 body is the login flow itself');
    assert.ok(Array.isArray(body.ui?.messages) && body.ui.messages.length > 0, 'flow carries ui.messages');
    assert.equal(body.ui.messages[0].id, MSG.INVALID_CREDENTIALS);
    assert.equal(body.ui.messages[0].type, 'error');
  });

  it('logs in with the new password', async () => {
    need(state.passwordChanged, 'password change');
    const data = await loginNative(email, newPassword);
    assert.equal(data.session.identity.id, state.identityId);
    state.newLoginToken = data.session_token;
  });

  it('native logout revokes the session token (whoami then 401 session_inactive)', async () => {
    const token = need(state.newLoginToken, 'session token from login with the new password');
    await expectOk(frontend.performNativeLogout({ performNativeLogoutBody: { session_token: token } }), 204);
    await expectSessionInactive(token);
  });
});

// ---------------------------------------------------------------------------
// 2. Registration validation errors come back as 400 + flow with messages
// ---------------------------------------------------------------------------

describe('native registration validation', () => {
  it('rejects a too-short password with 400 and message 4000032 on the password node', async () => {
    const shortPassword = 'ab1!';
    const flow = await registerExpectingValidationError(
      { email: uniqueEmail('short'), name: { first: 'Short', last: 'Password' } },
      shortPassword,
    );
    const node = findNode(flow, 'password');
    assert.ok(node, 'flow has a password node');
    const msg = node.messages.find((m) => m.id === MSG.PASSWORD_MIN_LENGTH);
    assert.ok(msg, `password node messages: ${JSON.stringify(node.messages)}`);
    assert.equal(msg.type, 'error');
    assert.equal(msg.context?.actual_length, shortPassword.length);
    assert.ok(msg.context?.min_length > shortPassword.length, 'min_length context exceeds the given length');
  });

  it('rejects registering the same email twice with 400 and message 4000007', async () => {
    const email = uniqueEmail('dup');
    await registerNative({ email, password: strongPassword() });
    const flow = await registerExpectingValidationError({ email, name: { first: 'Again', last: 'Again' } }, strongPassword());
    assert.ok(
      allMessageIds(flow).includes(MSG.DUPLICATE_CREDENTIALS),
      `expected message 4000007 somewhere on the flow, got ids ${JSON.stringify(allMessageIds(flow))}`,
    );
  });

  it('rejects a missing email with 400 and message 4000002 on traits.email', async () => {
    const flow = await registerExpectingValidationError({ name: { first: 'No', last: 'Email' } }, strongPassword());
    assert.ok(nodeMessageIds(flow, 'traits.email').includes(MSG.REQUIRED));
    const msg = findNode(flow, 'traits.email').messages.find((m) => m.id === MSG.REQUIRED);
    assert.equal(msg.context?.property, 'email');
  });
});

// ---------------------------------------------------------------------------
// 3. Admin identity API
// ---------------------------------------------------------------------------

describe('admin identity API', () => {
  const email = uniqueEmail('admin');
  const password = strongPassword();
  const state = {};

  it('creates an identity with an imported bcrypt hash (201)', async () => {
    const identity = await adminCreateIdentity({ email, password, first: 'Grace', last: 'Hopper' });
    assert.equal(identity.schema_id, 'default');
    assert.equal(identity.state, 'active');
    assert.equal(identity.traits.email, email);
    assert.deepEqual(identity.traits.name, { first: 'Grace', last: 'Hopper' });
    state.identity = identity;
  });

  it('lets the imported identity log in with the plaintext password', async () => {
    const identity = need(state.identity, 'created identity');
    const data = await loginNative(email, password);
    assert.equal(data.session.identity.id, identity.id);
  });

  it('pages GET /admin/identities with page_size=2 following Link rel="next"', async () => {
    const first = need(state.identity, 'created identity');
    const more = [];
    for (let i = 0; i < 3; i++) {
      more.push(await adminCreateIdentity({ email: uniqueEmail(`page${i}`), password: strongPassword() }));
    }
    state.others = more;
    const wanted = new Set([first.id, ...more.map((i) => i.id)]);

    const seen = new Set();
    let pageToken;
    let pages = 0;
    do {
      const res = await expectOk(admin.listIdentities({ pageSize: 2, pageToken }));
      assert.ok(Array.isArray(res.data), 'GET /admin/identities returns a bare JSON array');
      assert.ok(res.data.length <= 2, `page ${pages} has ${res.data.length} identities, page_size was 2`);
      for (const identity of res.data) {
        assert.ok(!seen.has(identity.id), `identity ${identity.id} appeared on two pages`);
        seen.add(identity.id);
      }
      pageToken = nextPageToken(res.headers.link);
      pages++;
      assert.ok(pages < 10_000, 'pagination did not terminate');
    } while (pageToken);

    assert.ok(pages >= 2, 'four identities at page_size=2 need at least two pages');
    for (const id of wanted) assert.ok(seen.has(id), `identity ${id} was never listed`);
  });

  it('filters GET /admin/identities by credentials_identifier', async () => {
    const identity = need(state.identity, 'created identity');
    const { data } = await expectOk(admin.listIdentities({ credentialsIdentifier: email }));
    assert.equal(data.length, 1, `expected exactly one identity for ${email}, got ${data.length}`);
    assert.equal(data[0].id, identity.id);
  });

  it('rejects creating a second identity with an existing email with 409', async () => {
    const other = need(state.others?.[0], 'second identity');
    const body = await expectStatus(
      admin.createIdentity({
        createIdentityBody: {
          schema_id: 'default',
          traits: { email: other.traits.email, name: { first: 'Dup', last: 'Licate' } },
        },
      }),
      409,
    );
    assert.equal(body.error?.code, 409);
  });

  it('applies a JSON Patch to traits and getIdentity returns the patched identity', async () => {
    const identity = need(state.identity, 'created identity');
    const { data: patched } = await expectOk(
      admin.patchIdentity({
        id: identity.id,
        jsonPatch: [{ op: 'replace', path: '/traits/name/first', value: 'Patched' }],
      }),
    );
    assert.equal(patched.id, identity.id);
    assert.equal(patched.traits.name.first, 'Patched');
    assert.equal(patched.traits.name.last, 'Hopper');
    assert.equal(patched.traits.email, email);

    const { data: fetched } = await expectOk(admin.getIdentity({ id: identity.id }));
    assert.equal(fetched.id, identity.id);
    assert.equal(fetched.traits.name.first, 'Patched');
    assert.ok(
      fetched.credentials?.password?.identifiers?.includes(email),
      `credentials.password.identifiers should list the email: ${JSON.stringify(fetched.credentials)}`,
    );
    assert.equal(fetched.credentials.password.config?.hashed_password, undefined, 'hash is not exposed by default');
  });

  it('deletes an identity (204) and getIdentity then returns 404', async () => {
    const identity = need(state.identity, 'created identity');
    await expectOk(admin.deleteIdentity({ id: identity.id }), 204);
    const body = await expectStatus(admin.getIdentity({ id: identity.id }), 404);
    assert.equal(body.error?.code, 404);
    const { data } = await expectOk(admin.listIdentities({ credentialsIdentifier: email }));
    assert.equal(data.length, 0, 'a deleted identity is no longer found by its identifier');
  });
});

// ---------------------------------------------------------------------------
// 4. Admin session API
// ---------------------------------------------------------------------------

describe('admin session API', () => {
  const email = uniqueEmail('sessions');
  const password = strongPassword();
  const state = {};

  it('lists both sessions of an identity after two native logins', async () => {
    const identity = await adminCreateIdentity({ email, password });
    const a = await loginNative(email, password);
    const b = await loginNative(email, password);
    assert.notEqual(a.session.id, b.session.id);
    assert.notEqual(a.session_token, b.session_token);
    Object.assign(state, { identity, a, b });

    const { data: sessions } = await expectOk(admin.listIdentitySessions({ id: identity.id }));
    const ids = sessions.map((s) => s.id);
    assert.ok(ids.includes(a.session.id) && ids.includes(b.session.id), `identity sessions: ${JSON.stringify(ids)}`);
    for (const s of sessions) assert.equal(s.active, true);
  });

  it('finds the session in GET /admin/sessions and GET /admin/sessions/{id}', async () => {
    need(state.a, 'two logged-in sessions');
    const { a, identity } = state;
    assert.ok(await adminSessionsContain(a.session.id), 'GET /admin/sessions lists the new session');

    const { data: session } = await expectOk(admin.getSession({ id: a.session.id, expand: ['identity'] }));
    assert.equal(session.id, a.session.id);
    assert.equal(session.active, true);
    assert.equal(session.identity?.id, identity.id);
  });

  it('disableSession deactivates exactly that session (whoami 401, other session still valid)', async () => {
    need(state.a, 'two logged-in sessions');
    const { a, b, identity } = state;
    await expectOk(admin.disableSession({ id: a.session.id }), 204);
    await expectSessionInactive(a.session_token);

    const { data: disabled } = await expectOk(admin.getSession({ id: a.session.id }));
    assert.equal(disabled.active, false, 'a disabled session is kept but inactive');

    const { data: whoami } = await expectOk(frontend.toSession({ xSessionToken: b.session_token }));
    assert.equal(whoami.id, b.session.id);

    const { data: active } = await expectOk(admin.listIdentitySessions({ id: identity.id, active: true }));
    assert.deepEqual(active.map((s) => s.id), [b.session.id], 'only the other session is still active');
  });

  it('deleteIdentitySessions revokes all remaining sessions of the identity', async () => {
    need(state.b, 'two logged-in sessions');
    const { b, identity } = state;
    await expectOk(admin.deleteIdentitySessions({ id: identity.id }), 204);
    await expectSessionInactive(b.session_token);
    const { data: sessions } = await expectOk(admin.listIdentitySessions({ id: identity.id }));
    assert.equal(sessions.length, 0, 'no sessions remain for the identity');
  });
});
