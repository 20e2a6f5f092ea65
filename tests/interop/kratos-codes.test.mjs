// Interop suite: recovery and verification by e-mailed code, driven with the
// official Ory Kratos JS SDK (@ory/kratos-client) against the running binary,
// with the codes read from the mail a real SMTP server (aiosmtpd, started by
// scripts/test: tests/interop/smtp_sink.py) received.
//
// Needs PORTCULLIS_PUBLIC_URL, PORTCULLIS_ADMIN_URL and PORTCULLIS_TEST_MAILDIR
// (the sink's directory of received messages, one .eml file each).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import PostalMime from 'postal-mime';
import { Configuration, FrontendApi, IdentityApi } from '@ory/kratos-client';

const PUBLIC_URL = process.env.PORTCULLIS_PUBLIC_URL;
const ADMIN_URL = process.env.PORTCULLIS_ADMIN_URL;
const MAILDIR = process.env.PORTCULLIS_TEST_MAILDIR;
if (!PUBLIC_URL || !ADMIN_URL || !MAILDIR) {
  throw new Error('PORTCULLIS_PUBLIC_URL, PORTCULLIS_ADMIN_URL and PORTCULLIS_TEST_MAILDIR must be set');
}

const baseOptions = { timeout: 15_000, proxy: false };
const frontend = new FrontendApi(new Configuration({ basePath: PUBLIC_URL, baseOptions }));
const admin = new IdentityApi(new Configuration({ basePath: ADMIN_URL, baseOptions }));

const uniqueEmail = (tag) => `codes-${tag}-${randomUUID()}@example.com`;
const strongPassword = () => `Pc!${randomBytes(15).toString('base64url')}9x`;

function describeError(err) {
  if (!err?.response) return String(err?.stack ?? err);
  return `HTTP ${err.response.status} ${JSON.stringify(err.response.data)}`;
}

async function ok(promise, status = 200) {
  let res;
  try {
    res = await promise;
  } catch (err) {
    assert.fail(`expected HTTP ${status}: ${describeError(err)}`);
  }
  assert.equal(res.status, status);
  return res.data;
}

async function failsWith(promise, status) {
  try {
    const res = await promise;
    assert.fail(`expected HTTP ${status}, got ${res.status}: ${JSON.stringify(res.data)}`);
  } catch (err) {
    if (!err?.response) throw err;
    assert.equal(err.response.status, status, describeError(err));
    return err.response.data;
  }
}

/** Every message the SMTP server received for `to`, parsed, oldest first. */
async function mailTo(to) {
  const out = [];
  for (const name of (await readdir(MAILDIR)).sort()) {
    if (!name.endsWith('.eml')) continue;
    const parsed = await PostalMime.parse(await readFile(join(MAILDIR, name)));
    if ((parsed.to ?? []).some((a) => a.address?.toLowerCase() === to.toLowerCase())) out.push(parsed);
  }
  return out;
}

/** Waits for the `n`th message to `to` (the courier sends in the background) and returns its code. */
async function codeFor(to, n = 1) {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const mails = await mailTo(to);
    if (mails.length >= n) {
      const m = mails[n - 1];
      const code = (m.text ?? '').match(/\b(\d{6})\b/)?.[1];
      assert.ok(code, `no code in the mail to ${to}: ${m.text}`);
      assert.ok(m.html?.includes(code), 'the HTML part carries the code too');
      return code;
    }
    if (Date.now() > deadline) assert.fail(`no mail #${n} to ${to} arrived (have ${mails.length})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const idsOf = (flow) => (flow.ui.messages ?? []).map((m) => m.id);

async function register(email, password) {
  const flow = await ok(frontend.createNativeRegistrationFlow());
  return ok(
    frontend.updateRegistrationFlow({
      flow: flow.id,
      updateRegistrationFlowBody: { method: 'password', password, traits: { email } },
    }),
  );
}

describe('recovery and verification by e-mailed code (@ory/kratos-client, real SMTP)', () => {
  it('verifies the address registration mailed a code to', async () => {
    const email = uniqueEmail('verify');
    const reg = await register(email, strongPassword());
    const next = reg.continue_with.find((c) => c.action === 'show_verification_ui');
    assert.ok(next, JSON.stringify(reg.continue_with));
    assert.equal(next.flow.verifiable_address, email);
    const code = await codeFor(email);
    const flow = await ok(frontend.getVerificationFlow({ id: next.flow.id }));
    assert.equal(flow.state, 'sent_email');
    const done = await ok(
      frontend.updateVerificationFlow({ flow: flow.id, updateVerificationFlowBody: { method: 'code', code } }),
    );
    assert.equal(done.state, 'passed_challenge');
    assert.deepEqual(idsOf(done), [1080002]);
    const identity = await ok(admin.getIdentity({ id: reg.identity.id }));
    assert.equal(identity.verifiable_addresses[0].verified, true);
    assert.equal(identity.verifiable_addresses[0].status, 'completed');
  });

  it('recovers an account: code → privileged session → new password → login with it', async () => {
    const email = uniqueEmail('recover');
    await register(email, strongPassword());
    // The verification mail goes out in the background: wait for it, or it could arrive after
    // the recovery mail is expected and be taken for it.
    await codeFor(email, 1);
    const before = 1;
    const flow = await ok(frontend.createNativeRecoveryFlow());
    assert.equal(flow.state, 'choose_method');
    const sent = await ok(
      frontend.updateRecoveryFlow({ flow: flow.id, updateRecoveryFlowBody: { method: 'code', email } }),
    );
    assert.equal(sent.state, 'sent_email');
    assert.deepEqual(idsOf(sent), [1060003]);
    const code = await codeFor(email, before + 1);
    const wrong = code === '000000' ? '000001' : '000000';
    const refused = await failsWith(
      frontend.updateRecoveryFlow({ flow: flow.id, updateRecoveryFlowBody: { method: 'code', code: wrong } }),
      400,
    );
    assert.deepEqual(idsOf(refused), [4060006]);
    const done = await ok(
      frontend.updateRecoveryFlow({ flow: flow.id, updateRecoveryFlowBody: { method: 'code', code } }),
    );
    assert.equal(done.state, 'passed_challenge');
    const token = done.continue_with.find((c) => c.action === 'set_ory_session_token')?.ory_session_token;
    const settingsId = done.continue_with.find((c) => c.action === 'show_settings_ui')?.flow?.id;
    assert.ok(token && settingsId, JSON.stringify(done.continue_with));
    // Used once.
    const again = await failsWith(
      frontend.updateRecoveryFlow({ flow: flow.id, updateRecoveryFlowBody: { method: 'code', code } }),
      400,
    );
    assert.deepEqual(idsOf(again), [4060001]);
    const newPassword = strongPassword();
    const saved = await ok(
      frontend.updateSettingsFlow({
        flow: settingsId,
        xSessionToken: token,
        updateSettingsFlowBody: { method: 'password', password: newPassword },
      }),
    );
    assert.equal(saved.state, 'success');
    const login = await ok(frontend.createNativeLoginFlow());
    const signedIn = await ok(
      frontend.updateLoginFlow({
        flow: login.id,
        updateLoginFlowBody: { method: 'password', identifier: email, password: newPassword },
      }),
    );
    assert.ok(signedIn.session_token);
    // The password change was announced by mail.
    const last = (await mailTo(email)).length;
    assert.ok(last >= before + 1);
  });

  it('answers an unknown address exactly like a known one, and mails it nothing', async () => {
    const known = uniqueEmail('known');
    await register(known, strongPassword());
    const unknown = uniqueEmail('unknown');
    const shape = async (email) => {
      const flow = await ok(frontend.createNativeRecoveryFlow());
      const sent = await ok(
        frontend.updateRecoveryFlow({ flow: flow.id, updateRecoveryFlowBody: { method: 'code', email } }),
      );
      return JSON.stringify({ ...sent, id: null, expires_at: null, issued_at: null })
        .replaceAll(sent.id, 'ID')
        .replaceAll(email, 'ADDRESS');
    };
    assert.equal(await shape(known), await shape(unknown));
    await new Promise((r) => setTimeout(r, 1500)); // give the courier time to (not) send
    assert.equal((await mailTo(unknown)).length, 0);
  });

  it('ends a flow after five wrong codes', async () => {
    const email = uniqueEmail('sixth');
    await register(email, strongPassword());
    await codeFor(email, 1); // the verification mail (see above)
    const before = 1;
    const flow = await ok(frontend.createNativeRecoveryFlow());
    await ok(frontend.updateRecoveryFlow({ flow: flow.id, updateRecoveryFlowBody: { method: 'code', email } }));
    const code = await codeFor(email, before + 1);
    const wrong = code === '999999' ? '999998' : '999999';
    for (let i = 0; i < 5; i++) {
      const f = await failsWith(
        frontend.updateRecoveryFlow({ flow: flow.id, updateRecoveryFlowBody: { method: 'code', code: wrong } }),
        400,
      );
      assert.deepEqual(idsOf(f), [4060006]);
    }
    const sixth = await failsWith(
      frontend.updateRecoveryFlow({ flow: flow.id, updateRecoveryFlowBody: { method: 'code', code } }),
      400,
    );
    assert.deepEqual(idsOf(sixth), [4060002]);
  });
});
