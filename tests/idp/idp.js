// A real OpenID provider (node `oidc-provider`) on loopback, for Veil's end-to-end sign-in tests.
//
// Run:  npm ci --prefix tests/idp && node tests/idp/idp.js
//
// Configuration (all optional; defaults suit a local `manage.py runserver` on port 8000):
//   IDP_PORT           port to listen on (or the first command-line argument); 0 = any free port.
//   IDP_CLIENT         JSON {"client_id", "client_secret", "redirect_uris": [...]}: the one
//                      confidential client (authenticates at the token endpoint with
//                      client_secret_post, as mozilla-django-oidc does by default).
//   IDP_ACCOUNTS       JSON list of accounts: {"sub", "email", "email_verified", "name",
//                      "given_name", "family_name", "groups": [...]}, and "oid" for an account
//                      that plays an Entra ID person (its object id, with the profile scope).
//                      An optional "userinfo_sub" makes userinfo answer with that `sub` instead
//                      (to test that the relying party refuses a subject mismatch);
//                      "userinfo_claims" overrides other claims in userinfo only, and
//                      "id_token_only" lists claims userinfo leaves out (Entra ID's `oid`).
//   IDP_ACCOUNTS_FILE  path of a file holding that JSON list instead; it is re-read at every
//                      lookup, so a test can change an account's claims between sign-ins.
//   IDP_KEY_ID         `kid` of the signing key (default: random). The RS256 key itself is
//                      generated afresh at every start, so two instances never share a key.
//
// Sign-in uses oidc-provider's built-in development interactions: a login form (field `login`
// takes the account's `sub`; the password is not checked) followed by a consent form.
// Once listening it prints `READY <port>` on stdout; the issuer is `http://127.0.0.1:<port>`.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const DEFAULT_CLIENT = {
  client_id: 'veil',
  client_secret: 'veil-dev-secret',
  redirect_uris: ['http://127.0.0.1:8000/oidc/callback/', 'http://localhost:8000/oidc/callback/'],
};
const DEFAULT_ACCOUNTS = [
  {
    sub: 'alice',
    email: 'alice@example.com',
    email_verified: true,
    name: 'Alice Example',
    given_name: 'Alice',
    family_name: 'Example',
    groups: ['engineering'],
  },
];

function fail(message) {
  process.stderr.write(`idp: ${message}\n`);
  process.exit(2);
}

function parseJson(name, raw) {
  try {
    return JSON.parse(raw);
  } catch (err) {
    return fail(`${name} is not valid JSON: ${err.message}`);
  }
}

function loadAccounts() {
  if (process.env.IDP_ACCOUNTS_FILE) {
    return parseJson('IDP_ACCOUNTS_FILE', readFileSync(process.env.IDP_ACCOUNTS_FILE, 'utf8'));
  }
  if (process.env.IDP_ACCOUNTS) {
    return parseJson('IDP_ACCOUNTS', process.env.IDP_ACCOUNTS);
  }
  return DEFAULT_ACCOUNTS;
}

const port = Number(process.env.IDP_PORT ?? process.argv[2] ?? 0);
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`bad port ${port}`);
const client = process.env.IDP_CLIENT ? parseJson('IDP_CLIENT', process.env.IDP_CLIENT) : DEFAULT_CLIENT;
for (const field of ['client_id', 'client_secret', 'redirect_uris']) {
  if (!client[field]) fail(`IDP_CLIENT needs ${field}`);
}
if (!Array.isArray(loadAccounts())) fail('accounts must be a JSON list');

const kid = process.env.IDP_KEY_ID || randomBytes(8).toString('hex');
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig', alg: 'RS256' };

const server = createServer();
server.listen(port, '127.0.0.1', () => {
  const actualPort = server.address().port;
  const provider = new Provider(`http://127.0.0.1:${actualPort}`, {
    clients: [
      {
        client_id: client.client_id,
        client_secret: client.client_secret,
        redirect_uris: client.redirect_uris,
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: client.token_endpoint_auth_method ?? 'client_secret_post',
      },
    ],
    jwks: { keys: [signingKey] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'given_name', 'family_name', 'oid'],
      groups: ['groups'],
    },
    // Also put the scope claims in the ID token (the default puts them only in userinfo when an
    // access token is issued); mozilla-django-oidc reads them from userinfo either way.
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: true } },
    async findAccount(ctx, id) {
      const account = loadAccounts().find((candidate) => candidate.sub === id);
      if (!account) return undefined;
      return {
        accountId: account.sub,
        async claims(use) {
          // `userinfo_sub` and `userinfo_claims` (tests only) make this IdP misbehave: userinfo
          // then names another subject (or another `oid`) than the ID token, which a relying
          // party must refuse. `id_token_only` claims are left out of userinfo, as Entra ID does.
          const {
            userinfo_sub: userinfoSub,
            userinfo_claims: userinfoClaims = {},
            id_token_only: idTokenOnly = [],
            ...claims
          } = account;
          if (use !== 'userinfo') return claims;
          const answered = { ...claims, ...userinfoClaims, ...(userinfoSub ? { sub: userinfoSub } : {}) };
          for (const name of idTokenOnly) delete answered[name];
          return answered;
        },
      };
    },
    renderError(ctx, out, error) {
      ctx.type = 'text/plain';
      ctx.body = `idp error: ${JSON.stringify(out)}\n`;
      process.stderr.write(`idp: error ${JSON.stringify(out)} ${error?.stack ?? ''}\n`);
    },
  });
  provider.on('server_error', (ctx, error) => process.stderr.write(`idp: server_error ${error.stack}\n`));
  server.on('request', provider.callback());
  process.stdout.write(`READY ${actualPort}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
