// A real OpenID provider (panva's oidc-provider, certified) as the upstream of Portcullis's
// social sign-in tests. It signs users in without a page: the test names the next account
// (POST /test/next), and the login and consent prompts are answered at once with it, so a
// plain HTTP client can walk the whole authorization code flow.
//
//   node idp/oidc-provider.mjs --port P --redirect <callback URL> [--redirect …]
//
// Prints "ready" when listening. Test-only routes:
//   POST /test/next  {"sub": "...", "claims": {...}}   the account the next login signs in
//   POST /test/next  {"abort": true}                   the next login is refused (access_denied)

import http from 'node:http';
import { parseArgs } from 'node:util';
import Provider from 'oidc-provider';

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    redirect: { type: 'string', multiple: true },
    'client-id': { type: 'string', default: 'portcullis' },
    'client-secret': { type: 'string', default: 'portcullis-test-secret' },
  },
});
const port = Number(values.port);
const issuer = `http://127.0.0.1:${port}`;

const accounts = new Map();
let next = null;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: values['client-id'],
      client_secret: values['client-secret'],
      redirect_uris: values.redirect,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  async findAccount(ctx, sub) {
    const claims = accounts.get(sub);
    if (!claims) return undefined;
    return { accountId: sub, claims: async () => ({ sub, ...claims }) };
  },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'given_name', 'family_name', 'picture', 'website'],
  },
  scopes: ['openid', 'offline_access', 'email', 'profile'],
  // Scope-requested claims go into the ID token too (Kratos reads them from there by default).
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  cookies: { keys: ['portcullis-test-cookie-key'] },
});
provider.on('server_error', (ctx, err) => console.error('idp server_error', err));

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params } = details;
  if (prompt.name === 'login') {
    const chosen = next;
    next = null;
    if (!chosen || chosen.abort) {
      return provider.interactionFinished(
        req,
        res,
        { error: 'access_denied', error_description: 'End-User aborted interaction' },
        { mergeWithLastSubmission: false },
      );
    }
    accounts.set(chosen.sub, chosen.claims ?? {});
    return provider.interactionFinished(req, res, { login: { accountId: chosen.sub } }, { mergeWithLastSubmission: false });
  }
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

async function readJson(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return JSON.parse(body || '{}');
}

const callback = provider.callback();
http
  .createServer(async (req, res) => {
    try {
      if (req.url.startsWith('/interaction/')) return await interaction(req, res);
      if (req.method === 'POST' && req.url === '/test/next') {
        next = await readJson(req);
        res.writeHead(204).end();
        return;
      }
      return callback(req, res);
    } catch (e) {
      console.error('idp error', e);
      res.writeHead(500).end(String(e));
    }
  })
  .listen(port, '127.0.0.1', () => console.log('ready'));
