// Interop suite: second factors (TOTP, lookup secrets / backup codes) and the
// authenticator assurance level (AAL), driven with the official Ory Kratos JS
// SDK (@ory/kratos-client) on native (API) flows, as a mobile app would. The
// authenticator app is `otpauth` (pinned in package.json): it reads the secret
// the settings flow shows and computes the codes, exactly as Google
// Authenticator & co. would; `jsqr` + `pngjs` play its camera and scan the QR.
//
// Wire reference: Kratos v1.3 (shared/reference/social-mfa/NOTES.md part B and
// the login.2fa.* / settings.totp.* / settings.lookup_secret.* fixtures).
//
// Timing: the server accepts a TOTP code of the current 30 s step ±1 and never
// accepts a step twice for one credential (replay). `freshCode` therefore hands
// out strictly increasing steps and only waits (to the exact step boundary)
// when the next unused step is not yet inside the window.
//
// Run with PORTCULLIS_PUBLIC_URL and PORTCULLIS_ADMIN_URL set, see README.md.
// The server must run with `serve --dev` (TOTP and lookup secrets enabled).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import jsQR from 'jsqr';
import { Secret, TOTP, URI } from 'otpauth';
import { PNG } from 'pngjs';
import { Configuration, FrontendApi, IdentityApi } from '@ory/kratos-client';

// ---------------------------------------------------------------------------
// Setup
// ---------------------------------------------------------------------------

const PUBLIC_URL = process.env.PORTCULLIS_PUBLIC_URL;
const ADMIN_URL = process.env.PORTCULLIS_ADMIN_URL;
if (!PUBLIC_URL || !ADMIN_URL) {
  throw new Error(
    'PORTCULLIS_PUBLIC_URL and PORTCULLIS_ADMIN_URL must be set ' +
      `(got PORTCULLIS_PUBLIC_URL=${PUBLIC_URL ?? '<unset>'} PORTCULLIS_ADMIN_URL=${ADMIN_URL ?? '<unset>'})`,
  );
}

const baseOptions = { timeout: 15_000, proxy: false };
const frontend = new FrontendApi(new Configuration({ basePath: PUBLIC_URL, baseOptions }));
const admin = new IdentityApi(new Configuration({ basePath: ADMIN_URL, baseOptions }));

// Message ids from the Kratos text catalogue (shared/reference/kratos/message-ids.tsv).
const MSG = {
  SECOND_FACTOR_CHALLENGE: 1010004, // "Please complete the second authentication challenge."
  SETTINGS_SAVED: 1050001,
  TOTP_QR: 1050005,
  TOTP_SECRET: 1050006,
  TOTP_SECRET_LABEL: 1050017,
  LOOKUP_SECRET: 1050009,
  LOOKUP_CODES_LABEL: 1050010,
  LOOKUP_SECRET_USED: 1050014,
  LOOKUP_CODES: 1050015,
  TOTP_INVALID: 4000008,
  LOOKUP_ALREADY_USED: 4000012,
  LOOKUP_INVALID: 4000016,
};

/** The default TOTP issuer: the host of the public URL. */
const ISSUER = new URL(PUBLIC_URL).hostname;

// ---------------------------------------------------------------------------
// HTTP helpers (same shape as kratos-native.test.mjs)
// ---------------------------------------------------------------------------

const uniqueEmail = (tag) => `mfa-${tag}-${randomUUID()}@example.com`;
const strongPassword = () => `Pc!${randomBytes(15).toString('base64url')}9x`;

function describeError(err) {
  if (!err?.response) return String(err?.stack ?? err);
  return `HTTP ${err.response.status} ${JSON.stringify(err.response.data)}`;
}

/** Awaits an SDK call that must answer `status`; returns the body. */
async function ok(promise, status = 200) {
  let res;
  try {
    res = await promise;
  } catch (err) {
    assert.fail(`expected HTTP ${status}, request failed: ${describeError(err)}`);
  }
  assert.equal(res.status, status, `expected HTTP ${status}, got ${res.status}: ${JSON.stringify(res.data)}`);
  return res.data;
}

/** Awaits an SDK call that must fail with HTTP `status`; returns the body. */
async function failsWith(promise, status) {
  let res;
  try {
    res = await promise;
  } catch (err) {
    if (!err?.response) throw err;
    assert.equal(err.response.status, status, `expected HTTP ${status}, got ${describeError(err)}`);
    return err.response.data;
  }
  assert.fail(`expected HTTP ${status}, got ${res.status}: ${JSON.stringify(res.data)}`);
}

/** Fails a step clearly when an earlier step of the same suite did not produce its state. */
function need(value, what) {
  assert.ok(value, `precondition missing: ${what} (an earlier step of this suite failed)`);
  return value;
}

/** The input node called `name`, and for `method` the submit button with that value. */
function input(flow, name, value) {
  return flow.ui.nodes.find(
    (n) => n.attributes?.name === name && (value === undefined || n.attributes.value === value),
  );
}

/** A text/img node by its own attributes.id (they have no name). */
const nodeById = (flow, id) => flow.ui.nodes.find((n) => n.attributes?.id === id);

const idsOf = (flow) => (flow.ui.messages ?? []).map((m) => m.id);
const methodsOf = (session) => session.authentication_methods.map((m) => [m.method, m.aal]);

// ---------------------------------------------------------------------------
// Self-service helpers
// ---------------------------------------------------------------------------

/** Native registration; returns {identityId, token} (the session hook signs in). */
async function register(email, password) {
  const flow = await ok(frontend.createNativeRegistrationFlow());
  const data = await ok(
    frontend.updateRegistrationFlow({
      flow: flow.id,
      updateRegistrationFlowBody: { method: 'password', password, traits: { email, name: { first: 'Ada', last: 'Lovelace' } } },
    }),
  );
  return { identityId: data.identity.id, token: data.session_token };
}

/** Native password login; returns the 200 body ({session_token, session}). */
async function passwordLogin(email, password) {
  const flow = await ok(frontend.createNativeLoginFlow());
  const data = await ok(
    frontend.updateLoginFlow({ flow: flow.id, updateLoginFlowBody: { method: 'password', identifier: email, password } }),
  );
  assert.equal(typeof data.session_token, 'string');
  return data;
}

/**
 * A password login of an identity with a second factor: 200 with an aal1
 * session whose identity is null (NOTES B1), which whoami refuses with 403.
 */
async function firstFactorOnly(email, password) {
  const data = await passwordLogin(email, password);
  assert.equal(data.session.authenticator_assurance_level, 'aal1');
  assert.ok('identity' in data.session, 'the session carries the identity field');
  assert.equal(data.session.identity, null, 'identity is withheld until the second factor');
  assert.deepEqual(methodsOf(data.session), [['password', 'aal1']]);
  const err = await failsWith(frontend.toSession({ xSessionToken: data.session_token }), 403);
  assert.equal(err.error?.id, 'session_aal2_required', JSON.stringify(err));
  return data;
}

/** A native login flow asking the session behind `token` for a second factor. */
async function aal2Flow(token) {
  const flow = await ok(frontend.createNativeLoginFlow({ aal: 'aal2', xSessionToken: token }));
  assert.equal(flow.type, 'api');
  assert.equal(flow.requested_aal, 'aal2');
  assert.deepEqual(idsOf(flow), [MSG.SECOND_FACTOR_CHALLENGE]);
  assert.equal(input(flow, 'password'), undefined, 'only second factors are offered');
  return flow;
}

/** Submits a second factor to an aal2 flow with the session token. */
const secondFactor = (flow, token, body) =>
  frontend.updateLoginFlow({ flow: flow.id, xSessionToken: token, updateLoginFlowBody: body });

/** Checks a completed step-up: the same session, now aal2 with `method` appended. */
async function assertUpgraded(data, { sessionId, token, identityId, method }) {
  assert.equal(data.session.id, sessionId, 'the aal1 session is upgraded, not replaced');
  assert.equal(data.session.authenticator_assurance_level, 'aal2');
  assert.deepEqual(methodsOf(data.session), [['password', 'aal1'], [method, 'aal2']]);
  const whoami = await ok(frontend.toSession({ xSessionToken: token }));
  assert.equal(whoami.id, sessionId);
  assert.equal(whoami.authenticator_assurance_level, 'aal2');
  assert.equal(whoami.identity.id, identityId);
}

const settingsFlow = (token) => ok(frontend.createNativeSettingsFlow({ xSessionToken: token }));
const submitSettings = (flow, token, body) =>
  frontend.updateSettingsFlow({ flow: flow.id, xSessionToken: token, updateSettingsFlowBody: body });

/** The identity as the admin API shows it with the second-factor credentials declassified. */
const adminIdentity = (id) => ok(admin.getIdentity({ id, includeCredential: ['totp', 'lookup_secret'] }));

// ---------------------------------------------------------------------------
// TOTP helpers (otpauth is the authenticator app)
// ---------------------------------------------------------------------------

const PERIOD_MS = 30_000;
const stepNow = () => Math.floor(Date.now() / PERIOD_MS);
const app = (base32) => new TOTP({ algorithm: 'SHA1', digits: 6, period: 30, secret: Secret.fromBase32(base32) });
const codeAt = (totp, step) => totp.generate({ timestamp: step * PERIOD_MS });

/**
 * A code for a step the server has not accepted yet: the later of "now" and
 * the step after `lastStep`. Steps up to now+1 are inside the server's ±1
 * window; a later one is waited for until it is (to the millisecond).
 */
async function freshCode(totp, lastStep) {
  const step = Math.max(lastStep + 1, stepNow());
  const wait = (step - 1) * PERIOD_MS - Date.now();
  if (wait > 0) await sleep(wait + 20);
  return { step, code: codeAt(totp, step) };
}

/** A six-digit code that is none of the codes near now, so certainly wrong. */
function wrongCode(totp) {
  const near = new Set([-2, -1, 0, 1, 2].map((d) => codeAt(totp, stepNow() + d)));
  for (let n = 0; ; n++) {
    const c = String((135791 + n * 7919) % 1_000_000).padStart(6, '0');
    if (!near.has(c)) return c;
  }
}

/** What a phone camera reads from the totp_qr node's PNG data URL. */
function scanQr(src) {
  assert.match(src, /^data:image\/png;base64,/);
  const png = PNG.sync.read(Buffer.from(src.slice(src.indexOf(',') + 1), 'base64'));
  const found = jsQR(new Uint8ClampedArray(png.data), png.width, png.height);
  assert.ok(found, 'the QR code can be scanned');
  return found.data;
}

/** The base32 secret from a settings flow's totp nodes, checked against the Kratos shape. */
function totpSecret(flow) {
  const node = nodeById(flow, 'totp_secret_key');
  assert.ok(node, 'settings flow has the totp_secret_key text node');
  assert.equal(node.type, 'text');
  assert.equal(node.group, 'totp');
  assert.equal(node.meta.label?.id, MSG.TOTP_SECRET_LABEL);
  const text = node.attributes.text;
  assert.equal(text.id, MSG.TOTP_SECRET);
  const secret = text.context?.secret;
  assert.match(secret, /^[A-Z2-7]+=*$/, 'the secret is base32');
  assert.equal(text.text, secret, 'the text shows the secret itself');
  assert.ok(Secret.fromBase32(secret).bytes.length >= 16, 'at least 128 bits (Kratos: 160)');
  return secret;
}

/** Enrols TOTP through the settings flow of `token`'s session; returns {secret, totp, step}. */
async function enrolTotp(token) {
  const flow = await settingsFlow(token);
  const secret = totpSecret(flow);
  const totp = app(secret);
  const step = stepNow();
  const done = await ok(submitSettings(flow, token, { method: 'totp', totp_code: codeAt(totp, step) }));
  assert.equal(done.state, 'success');
  assert.ok(idsOf(done).includes(MSG.SETTINGS_SAVED));
  return { secret, totp, step };
}

// ---------------------------------------------------------------------------
// Lookup-secret helpers
// ---------------------------------------------------------------------------

/** The codes of a lookup_secret_codes node: [{id, secret?, usedAt?}], plus its text. */
function lookupCodes(flow) {
  const node = nodeById(flow, 'lookup_secret_codes');
  assert.ok(node, 'flow shows the lookup_secret_codes text node');
  assert.equal(node.type, 'text');
  assert.equal(node.group, 'lookup_secret');
  assert.equal(node.meta.label?.id, MSG.LOOKUP_CODES_LABEL);
  const text = node.attributes.text;
  assert.equal(text.id, MSG.LOOKUP_CODES);
  const entries = text.context.secrets.map((s) => ({ id: s.id, secret: s.context?.secret, usedAt: s.context?.used_at }));
  return { entries, text: text.text };
}

/** Which of the lookup_secret_* buttons a settings flow offers, sorted. */
const lookupButtons = (flow) =>
  flow.ui.nodes
    .filter((n) => n.group === 'lookup_secret' && n.attributes.type === 'submit')
    .map((n) => n.attributes.name)
    .sort();

// ---------------------------------------------------------------------------
// 1. TOTP: enrolment, step-up, replay, admin removal
// ---------------------------------------------------------------------------

describe('TOTP on native flows', () => {
  const email = uniqueEmail('totp');
  const password = strongPassword();
  const state = {};

  it('a settings flow offers TOTP: QR image, secret text node, code input, submit', async () => {
    Object.assign(state, await register(email, password));
    const flow = await settingsFlow(state.token);

    const qr = nodeById(flow, 'totp_qr');
    assert.ok(qr, 'totp_qr img node');
    assert.equal(qr.type, 'img');
    assert.equal(qr.group, 'totp');
    assert.equal(qr.meta.label?.id, MSG.TOTP_QR);
    const secret = totpSecret(flow);

    // Scanning the QR code gives Kratos's otpauth URL for the secret shown as text:
    // issuer = the public host, account = the email trait, query keys sorted.
    const url = scanQr(qr.attributes.src);
    const [, label, query] = url.match(/^otpauth:\/\/totp\/([^?]+)\?(.*)$/) ?? [];
    assert.equal(decodeURIComponent(label ?? ''), `${ISSUER}:${email}`, url);
    assert.equal(query, `algorithm=SHA1&digits=6&issuer=${ISSUER}&period=30&secret=${secret}`);
    const scanned = URI.parse(url);
    assert.ok(scanned instanceof TOTP);
    assert.deepEqual(
      [scanned.issuer, scanned.label, scanned.secret.base32, scanned.algorithm, scanned.digits, scanned.period],
      [ISSUER, email, secret, 'SHA1', 6, 30],
    );

    const code = input(flow, 'totp_code');
    assert.equal(code?.group, 'totp');
    assert.equal(code.attributes.type, 'text');
    assert.equal(input(flow, 'method', 'totp')?.attributes.type, 'submit');
    assert.equal(input(flow, 'totp_unlink'), undefined, 'nothing to unlink yet');
    // The otpauth:// URL is only inside the QR picture, never as text.
    assert.ok(!JSON.stringify(flow).includes('otpauth:'), 'no otpauth URL in the flow');
    state.flow = flow;
  });

  it('a wrong code is refused with 400 and 4000008 on the totp_code node', async () => {
    const flow = need(state.flow, 'settings flow');
    const body = await failsWith(
      submitSettings(flow, state.token, { method: 'totp', totp_code: wrongCode(app(totpSecret(flow))) }),
      400,
    );
    assert.equal(body.id, flow.id, 'the 400 body is the same settings flow');
    assert.deepEqual(input(body, 'totp_code').messages.map((m) => m.id), [MSG.TOTP_INVALID]);
    assert.notEqual(body.state, 'success');
    // Whatever key the re-rendered flow shows is the one to enrol with.
    state.flow = body;
  });

  it('the right code links TOTP and upgrades the current session to aal2', async () => {
    const flow = need(state.flow, 'settings flow after the wrong code');
    const secret = totpSecret(flow);
    const totp = app(secret);
    const step = stepNow();
    const done = await ok(submitSettings(flow, state.token, { method: 'totp', totp_code: codeAt(totp, step) }));
    assert.equal(done.state, 'success');
    assert.ok(idsOf(done).includes(MSG.SETTINGS_SAVED), `messages ${JSON.stringify(idsOf(done))}`);
    Object.assign(state, { secret, totp, lastStep: step });

    // Not locked out: the session that enrolled now has the second factor itself.
    const whoami = await ok(frontend.toSession({ xSessionToken: state.token }));
    assert.equal(whoami.authenticator_assurance_level, 'aal2');
    assert.deepEqual(methodsOf(whoami), [['password', 'aal1'], ['totp', 'aal2']]);
  });

  it('once linked, settings offer totp_unlink instead of a new key', async () => {
    need(state.secret, 'linked TOTP');
    const flow = await settingsFlow(state.token);
    const unlink = input(flow, 'totp_unlink');
    assert.ok(unlink, 'totp_unlink node');
    assert.equal(unlink.group, 'totp');
    assert.equal(unlink.attributes.type, 'submit');
    assert.equal(String(unlink.attributes.value), 'true');
    assert.equal(nodeById(flow, 'totp_qr'), undefined);
    assert.equal(nodeById(flow, 'totp_secret_key'), undefined);
  });

  it('the admin API lists the totp credential without giving the key away', async () => {
    need(state.secret, 'linked TOTP');
    const plain = await ok(admin.getIdentity({ id: state.identityId }));
    assert.ok(plain.credentials?.totp, 'credentials.totp is listed');
    assert.equal(plain.credentials.totp.config, undefined, 'config only with include_credential');

    const identity = await ok(admin.getIdentity({ id: state.identityId, includeCredential: ['totp'] }));
    const cred = identity.credentials.totp;
    assert.equal(cred.type, 'totp');
    assert.deepEqual(cred.identifiers, [state.identityId]);
    // Unlike Kratos (plain `totp_url`), Portcullis keeps the key sealed, even from admins.
    const shown = JSON.stringify(identity);
    assert.ok(!shown.includes(state.secret) && !shown.includes('otpauth:'), 'the key stays sealed');
  });

  it('a password login is aal1 only: identity null, whoami 403 pointing at the aal2 login', async () => {
    need(state.secret, 'linked TOTP');
    const data = await firstFactorOnly(email, password);
    const err = await failsWith(frontend.toSession({ xSessionToken: data.session_token }), 403);
    assert.equal(err.error.code, 403);
    for (const to of [err.redirect_browser_to, err.error.details?.redirect_browser_to]) {
      const url = new URL(to);
      assert.equal(url.origin, new URL(PUBLIC_URL).origin);
      assert.equal(url.pathname, '/self-service/login/browser');
      assert.equal(url.searchParams.get('aal'), 'aal2');
    }
    state.login = data;
  });

  it('the aal2 flow asks for the TOTP code; a wrong code is 400 with ui.messages [4000008]', async () => {
    const { session_token: token } = need(state.login, 'aal1 login');
    const flow = await aal2Flow(token);
    const code = input(flow, 'totp_code');
    assert.equal(code?.group, 'totp');
    assert.equal(code.attributes.required, true);
    assert.equal(input(flow, 'method', 'totp')?.attributes.type, 'submit');
    assert.equal(input(flow, 'lookup_secret'), undefined, 'no backup codes set up');

    const body = await failsWith(secondFactor(flow, token, { method: 'totp', totp_code: wrongCode(state.totp) }), 400);
    assert.equal(body.id, flow.id);
    assert.deepEqual(idsOf(body), [MSG.TOTP_INVALID], 'the error replaces the 1010004 message');
    assert.deepEqual(input(body, 'totp_code').messages, []);
    assert.ok(!input(body, 'totp_code').attributes.value, 'the typed code is not echoed back');
    state.aal2Flow = body;
  });

  it('a fresh code upgrades the same session to aal2 (password + totp)', async () => {
    const flow = need(state.aal2Flow, 'aal2 flow');
    const { session_token: token, session } = state.login;
    const { step, code } = await freshCode(state.totp, state.lastStep);
    const data = await ok(secondFactor(flow, token, { method: 'totp', totp_code: code }));
    await assertUpgraded(data, { sessionId: session.id, token, identityId: state.identityId, method: 'totp' });
    Object.assign(state, { lastStep: step, usedCode: code });
  });

  it('the same code is not accepted a second time (replay), even on another session', async () => {
    need(state.usedCode, 'a code accepted for login');
    const data = await firstFactorOnly(email, password);
    const flow = await aal2Flow(data.session_token);
    // Still inside the ±1 window: only the replay rule can refuse it.
    assert.ok(stepNow() <= state.lastStep + 1, 'the used code is still current');
    const body = await failsWith(
      secondFactor(flow, data.session_token, { method: 'totp', totp_code: state.usedCode }),
      400,
    );
    assert.deepEqual(idsOf(body), [MSG.TOTP_INVALID]);
    await failsWith(frontend.toSession({ xSessionToken: data.session_token }), 403);
    state.stillAal1 = data;
  });

  it('aal=aal3 is refused with 400; aal=aal2 without a session with 401 session_aal1_required', async () => {
    const { session_token: token } = need(state.stillAal1, 'aal1 session');
    const bad = await failsWith(frontend.createNativeLoginFlow({ aal: 'aal3', xSessionToken: token }), 400);
    assert.equal(bad.error?.code, 400, JSON.stringify(bad));
    const none = await failsWith(frontend.createNativeLoginFlow({ aal: 'aal2' }), 401);
    assert.equal(none.error?.id, 'session_aal1_required', JSON.stringify(none));
  });

  it('DELETE /admin/identities/{id}/credentials/totp removes TOTP: password alone is enough again', async () => {
    const aal1 = need(state.stillAal1, 'aal1 session');
    await ok(admin.deleteIdentityCredentials({ id: state.identityId, type: 'totp' }), 204);
    const identity = await adminIdentity(state.identityId);
    assert.equal(identity.credentials.totp, undefined);

    // The waiting aal1 session now satisfies highest_available...
    const whoami = await ok(frontend.toSession({ xSessionToken: aal1.session_token }));
    assert.equal(whoami.authenticator_assurance_level, 'aal1');
    // ...and a new password login is a complete one.
    const data = await passwordLogin(email, password);
    assert.equal(data.session.identity?.id, state.identityId);
    assert.equal((await ok(frontend.toSession({ xSessionToken: data.session_token }))).identity.id, state.identityId);
  });
});

// ---------------------------------------------------------------------------
// 2. Lookup secrets (backup codes), then removing every second factor
// ---------------------------------------------------------------------------

describe('lookup secrets on native flows', () => {
  const email = uniqueEmail('lookup');
  const password = strongPassword();
  const state = {};

  it('without codes, settings offer only lookup_secret_regenerate', async () => {
    Object.assign(state, await register(email, password));
    const flow = await settingsFlow(state.token);
    assert.deepEqual(lookupButtons(flow), ['lookup_secret_regenerate']);
    assert.equal(String(input(flow, 'lookup_secret_regenerate').attributes.value), 'true');
    assert.equal(nodeById(flow, 'lookup_secret_codes'), undefined);
    state.flow = flow;
  });

  it('regenerate shows 12 codes to confirm; nothing is saved yet', async () => {
    const flow = need(state.flow, 'settings flow');
    const shown = await ok(submitSettings(flow, state.token, { method: 'lookup_secret', lookup_secret_regenerate: true }));
    assert.equal(shown.state, 'show_form', 'regenerate asks to confirm, it is no success yet');
    assert.ok(!idsOf(shown).includes(MSG.SETTINGS_SAVED));
    const { entries, text } = lookupCodes(shown);
    assert.equal(entries.length, 12);
    for (const e of entries) {
      assert.equal(e.id, MSG.LOOKUP_SECRET);
      assert.match(e.secret, /^[a-z0-9]{8}$/);
    }
    const codes = entries.map((e) => e.secret);
    assert.equal(new Set(codes).size, 12, 'all different');
    assert.equal(text, codes.join(', '));
    assert.deepEqual(lookupButtons(shown), ['lookup_secret_confirm']);
    assert.equal((await adminIdentity(state.identityId)).credentials.lookup_secret, undefined, 'pending only');
    Object.assign(state, { flow: shown, codes });
  });

  it('confirm saves them and upgrades the current session to aal2', async () => {
    const flow = need(state.codes && state.flow, 'generated codes');
    const done = await ok(submitSettings(flow, state.token, { method: 'lookup_secret', lookup_secret_confirm: true }));
    assert.equal(done.state, 'success');
    assert.ok(idsOf(done).includes(MSG.SETTINGS_SAVED));
    const whoami = await ok(frontend.toSession({ xSessionToken: state.token }));
    assert.equal(whoami.authenticator_assurance_level, 'aal2');
    assert.deepEqual(methodsOf(whoami), [['password', 'aal1'], ['lookup_secret', 'aal2']]);
    const cred = (await adminIdentity(state.identityId)).credentials.lookup_secret;
    assert.deepEqual(cred?.identifiers, [state.identityId]);
    state.confirmed = true;
  });

  it('settings then offer reveal and disable; reveal shows the saved codes', async () => {
    need(state.confirmed, 'confirmed codes');
    const flow = await settingsFlow(state.token);
    assert.deepEqual(lookupButtons(flow), ['lookup_secret_disable', 'lookup_secret_reveal']);
    const revealed = await ok(submitSettings(flow, state.token, { method: 'lookup_secret', lookup_secret_reveal: true }));
    assert.deepEqual(lookupCodes(revealed).entries.map((e) => e.secret), state.codes);
  });

  it('a backup code completes the second factor of a password login (same session, aal2)', async () => {
    need(state.confirmed, 'confirmed codes');
    const { session_token: token, session } = await firstFactorOnly(email, password);
    const flow = await aal2Flow(token);
    assert.equal(input(flow, 'lookup_secret')?.group, 'lookup_secret');
    assert.equal(input(flow, 'method', 'lookup_secret')?.attributes.type, 'submit');
    assert.equal(input(flow, 'totp_code'), undefined, 'no TOTP set up');
    const data = await ok(secondFactor(flow, token, { method: 'lookup_secret', lookup_secret: state.codes[0] }));
    await assertUpgraded(data, { sessionId: session.id, token, identityId: state.identityId, method: 'lookup_secret' });
    state.usedOne = true;
  });

  it('a used code is 4000012, an unknown one 4000016; the flow still takes a good code', async () => {
    need(state.usedOne, 'first code used');
    const { session_token: token, session } = await firstFactorOnly(email, password);
    const flow = await aal2Flow(token);
    const reused = await failsWith(secondFactor(flow, token, { method: 'lookup_secret', lookup_secret: state.codes[0] }), 400);
    assert.deepEqual(idsOf(reused), [MSG.LOOKUP_ALREADY_USED]);
    let unknown = 'zz9zz9zz';
    while (state.codes.includes(unknown)) unknown = randomBytes(4).toString('hex');
    const invalid = await failsWith(secondFactor(flow, token, { method: 'lookup_secret', lookup_secret: unknown }), 400);
    assert.deepEqual(idsOf(invalid), [MSG.LOOKUP_INVALID]);
    await failsWith(frontend.toSession({ xSessionToken: token }), 403);

    const data = await ok(secondFactor(flow, token, { method: 'lookup_secret', lookup_secret: state.codes[1] }));
    await assertUpgraded(data, { sessionId: session.id, token, identityId: state.identityId, method: 'lookup_secret' });
    state.token = token; // an aal2 session, authenticated just now (privileged)
  });

  it('reveal marks the used codes as used (1050014 with used_at) and hides them', async () => {
    need(state.usedOne, 'codes used');
    const flow = await settingsFlow(state.token);
    const { entries, text } = lookupCodes(
      await ok(submitSettings(flow, state.token, { method: 'lookup_secret', lookup_secret_reveal: true })),
    );
    assert.equal(entries.length, 12);
    entries.forEach((e, i) => {
      if (i < 2) {
        assert.equal(e.id, MSG.LOOKUP_SECRET_USED, `code ${i} was used`);
        assert.ok(e.usedAt, 'used_at is given');
        assert.equal(e.secret, undefined);
      } else {
        assert.deepEqual([e.id, e.secret], [MSG.LOOKUP_SECRET, state.codes[i]]);
      }
    });
    // As in Kratos's snapshot: a used code reads `used` in the list.
    assert.deepEqual(text.split(', '), state.codes.map((c, i) => (i < 2 ? 'used' : c)));
  });

  it('with TOTP too, the aal2 flow offers both second factors', async () => {
    need(state.usedOne, 'codes used');
    await enrolTotp(state.token);
    const { session_token: token } = await firstFactorOnly(email, password);
    const flow = await aal2Flow(token);
    const names = flow.ui.nodes.map((n) => `${n.group}/${n.attributes.name}=${n.attributes.value ?? ''}`);
    const totpAt = names.indexOf('totp/totp_code=');
    const lookupAt = names.indexOf('lookup_secret/lookup_secret=');
    assert.ok(totpAt >= 0 && lookupAt > totpAt, `totp before lookup_secret (Kratos order): ${names}`);
    assert.ok(names.includes('totp/method=totp') && names.includes('lookup_secret/method=lookup_secret'));
    await ok(secondFactor(flow, token, { method: 'lookup_secret', lookup_secret: state.codes[2] }));
    state.token = token;
    state.bothFactors = true;
  });

  it('unlinking TOTP leaves the backup codes: a password login still needs the second factor', async () => {
    need(state.bothFactors, 'TOTP and backup codes');
    const flow = await settingsFlow(state.token);
    const done = await ok(submitSettings(flow, state.token, { method: 'totp', totp_unlink: true }));
    assert.equal(done.state, 'success');
    assert.ok(idsOf(done).includes(MSG.SETTINGS_SAVED));
    assert.equal((await adminIdentity(state.identityId)).credentials.totp, undefined);
    const after = await settingsFlow(state.token);
    assert.ok(nodeById(after, 'totp_secret_key'), 'a new key is offered again');
    assert.equal(input(after, 'totp_unlink'), undefined);

    const { session_token: token } = await firstFactorOnly(email, password);
    const aal2 = await aal2Flow(token);
    assert.equal(input(aal2, 'totp_code'), undefined, 'TOTP is gone');
    assert.ok(input(aal2, 'lookup_secret'), 'backup codes remain');
    await ok(secondFactor(aal2, token, { method: 'lookup_secret', lookup_secret: state.codes[3] }));
    state.token = token;
    state.totpGone = true;
  });

  it('disabling the backup codes too: a password login is complete at aal1, whoami 200', async () => {
    need(state.totpGone, 'TOTP unlinked');
    const flow = await settingsFlow(state.token);
    const done = await ok(submitSettings(flow, state.token, { method: 'lookup_secret', lookup_secret_disable: true }));
    assert.equal(done.state, 'success');
    assert.equal((await adminIdentity(state.identityId)).credentials.lookup_secret, undefined);
    assert.deepEqual(lookupButtons(await settingsFlow(state.token)), ['lookup_secret_regenerate']);

    const data = await passwordLogin(email, password);
    assert.equal(data.session.authenticator_assurance_level, 'aal1');
    assert.equal(data.session.identity?.id, state.identityId, 'no second factor left to wait for');
    const whoami = await ok(frontend.toSession({ xSessionToken: data.session_token }));
    assert.equal(whoami.authenticator_assurance_level, 'aal1');
    assert.equal(whoami.identity.id, state.identityId);
  });
});
