// A real OpenID Connect provider (panva's certified oidc-provider) on loopback, for the SSO tests.
//
// Configured per instance through the environment (tests/oidc_fixtures.py starts it):
//   OIDC_CLIENTS    JSON list of {client_id, client_secret, redirect_uris[, id_token_signed_response_alg]}
//   OIDC_ACCOUNTS   path of a JSON file {username: {password, email, email_verified[, sub][, name]}},
//                   read again on every use so a test can change an account between logins
//   OIDC_ISSUER     the issuer it claims (default: its own http://127.0.0.1:<port>); a hostile
//                   instance claims another provider's issuer
//   OIDC_ID_TOKEN_FOR_CLIENT  mint ID tokens for this client instead of the one asking (a misbehaving
//                   provider: the token response then carries a token for another audience)
//   OIDC_CLAIMS_IN_ID_TOKEN=1 put e-mail claims in the ID token too (by default only userinfo has them)
// Each instance generates its own signing key. It listens on a port the OS picks and prints one JSON
// line {"issuer", "port"} on stdout once it is ready.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const env = process.env;
const clients = JSON.parse(env.OIDC_CLIENTS || '[]').map((c) => ({
  token_endpoint_auth_method: 'client_secret_basic',
  grant_types: ['authorization_code'],
  response_types: ['code'],
  ...c,
}));

function accounts() {
  return JSON.parse(readFileSync(env.OIDC_ACCOUNTS, 'utf8'));
}

function findByUsername(username) {
  const found = accounts()[username];
  return found ? { username, ...found } : undefined;
}

function findBySub(sub) {
  return Object.entries(accounts()).map(([username, a]) => ({ username, ...a }))
    .find((a) => (a.sub || a.username) === sub);
}

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(title, body) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title></head>
<body><main><h1>${escape(title)}</h1>${body}</main></body></html>`;
}

function loginForm(uid, clientId, error) {
  return page('Test identity provider: sign in', `
<p>Signing in to <strong>${escape(clientId)}</strong>.</p>
${error ? `<p role="alert">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
  <label for="username">Username</label> <input id="username" name="username" autocomplete="username" required>
  <label for="password">Password</label> <input id="password" name="password" type="password" required>
  <button type="submit">Sign in</button>
</form>
<form method="post" action="/interaction/${escape(uid)}/abort"><button type="submit">Cancel</button></form>`);
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

const server = createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = env.OIDC_ISSUER || `http://127.0.0.1:${port}`;
  // ES256: an EC key is generated in a millisecond, an RSA one takes a good part of a second.
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: randomBytes(8).toString('hex'), use: 'sig', alg: 'ES256' };

  const provider = new Provider(issuer, {
    clients,
    jwks: { keys: [signingKey] },
    cookies: {
      // The portal's cookie is portal_session; cookies ignore the port, so ours are named apart.
      names: { session: 'op_session', interaction: 'op_interaction', resume: 'op_interaction_resume' },
      keys: [randomBytes(32).toString('hex')],
    },
    pkce: { required: () => true },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    scopes: ['openid', 'email', 'profile'],
    conformIdTokenClaims: env.OIDC_CLAIMS_IN_ID_TOKEN !== '1',
    features: { devInteractions: { enabled: false } },
    // HS256 is on offer so that a client registered for it gets a MAC'd ID token (which the portal refuses).
    enabledJWA: { idTokenSigningAlgValues: ['ES256', 'HS256'] },
    clientDefaults: { id_token_signed_response_alg: 'ES256' },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    // First-party test clients: consent is implied, so the only page is the login form.
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
      grant.addOIDCScope('openid email profile');
      await grant.save();
      return grant;
    },
    async findAccount(ctx, sub) {
      const account = findBySub(sub);
      if (!account) return undefined;
      return {
        accountId: sub,
        async claims() {
          const current = findBySub(sub) || account;
          return { sub, email: current.email, email_verified: current.email_verified, name: current.name || current.username };
        },
      };
    },
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = page('Test identity provider: error', `<p>${escape(out.error)}: ${escape(out.error_description || '')}</p>`);
    },
  });

  if (env.OIDC_ID_TOKEN_FOR_CLIENT) {
    const issue = provider.IdToken.prototype.issue;
    provider.IdToken.prototype.issue = async function misissue(options) {
      if (options?.use === 'idtoken') this.client = await provider.Client.find(env.OIDC_ID_TOKEN_FOR_CLIENT);
      return issue.call(this, options);
    };
  }

  const oidc = provider.callback();
  server.on('request', async (req, res) => {
    const match = req.url.match(/^\/interaction\/([\w-]+)(\/login|\/abort)?$/);
    if (!match) return oidc(req, res);
    try {
      const details = await provider.interactionDetails(req, res);
      if (match[2] === '/abort' && req.method === 'POST') {
        return await provider.interactionFinished(req, res, {
          error: 'access_denied', error_description: 'End-User aborted interaction',
        }, { mergeWithLastSubmission: false });
      }
      if (match[2] === '/login' && req.method === 'POST') {
        const form = await readForm(req);
        const account = findByUsername(form.get('username') || '');
        if (!account || account.password !== form.get('password')) {
          res.writeHead(401, { 'content-type': 'text/html; charset=utf-8' });
          return res.end(loginForm(details.uid, details.params.client_id, 'Wrong username or password.'));
        }
        return await provider.interactionFinished(req, res, {
          login: { accountId: account.sub || account.username },
        }, { mergeWithLastSubmission: false });
      }
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return res.end(loginForm(details.uid, details.params.client_id));
    } catch (err) {
      res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8' });
      return res.end(`interaction failed: ${err.message}`);
    }
  });

  process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
});
