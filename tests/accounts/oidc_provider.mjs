// A real OpenID Connect provider for the SSO tests: the npm package oidc-provider, on 127.0.0.1.
//
// Environment: PORT (the issuer is http://127.0.0.1:PORT), CLIENT_ID, CLIENT_SECRET, REDIRECT_URIS (space
// separated). Accounts live in memory; the test sets them with
//   PUT /test-admin/accounts/<id>  {"email": ..., "name": ..., "groups": [...], "disabled": false}
// A disabled or unknown account cannot log in, and its existing provider session no longer signs it in.
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import Provider, { interactionPolicy } from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const accounts = new Map();

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function findAccount(ctx, id) {
  const account = accounts.get(id);
  if (!account) return undefined;
  return {
    accountId: id,
    async claims() {
      return {
        sub: id,
        email: account.email,
        email_verified: true,
        name: account.name || id,
        preferred_username: id,
        groups: [...(account.groups || [])],
      };
    },
  };
}

// A disabled account's existing provider session no longer counts as a login: a silent (prompt=none)
// re-authentication then answers error=login_required, as Keycloak or Entra ID do.
const policy = interactionPolicy.base();
policy.get('login').checks.add(
  new interactionPolicy.Check('account_disabled', 'The account is disabled', (ctx) => {
    const { accountId } = ctx.oidc.session;
    return accountId && accounts.get(accountId)?.disabled
      ? interactionPolicy.Check.REQUEST_PROMPT
      : interactionPolicy.Check.NO_NEED_TO_PROMPT;
  }),
);

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: process.env.CLIENT_ID,
      client_secret: process.env.CLIENT_SECRET,
      redirect_uris: (process.env.REDIRECT_URIS || '').split(' ').filter(Boolean),
      grant_types: ['authorization_code'],
      response_types: ['code'],
      id_token_signed_response_alg: 'RS256',
    },
  ],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  scopes: ['openid', 'email', 'profile', 'groups'],
  findAccount,
  cookies: { keys: [randomBytes(16).toString('hex')] },
  features: { devInteractions: { enabled: false } },
  pkce: { required: () => false },
  interactions: { policy, url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  // First-party client: consent is given on the user's behalf.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid email profile groups');
    await grant.save();
    return grant;
  },
});

function loginPage(uid, error) {
  return `<!doctype html><html><head><title>Test provider: sign in</title></head><body>
<h1>Test identity provider</h1>
${error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<label for="login">User</label> <input id="login" name="login" autofocus>
<button type="submit">Sign in</button></form></body></html>`;
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString();
}

function send(res, status, body, type = 'text/html; charset=utf-8') {
  res.writeHead(status, { 'Content-Type': type });
  res.end(body);
}

const callback = provider.callback();

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, issuer);
  try {
    const admin = url.pathname.match(/^\/test-admin\/accounts\/([^/]+)$/);
    if (admin && req.method === 'PUT') {
      accounts.set(decodeURIComponent(admin[1]), JSON.parse(await readBody(req)));
      return send(res, 204, '');
    }
    const login = url.pathname.match(/^\/interaction\/([^/]+)\/login$/);
    if (login && req.method === 'POST') {
      const details = await provider.interactionDetails(req, res);
      const accountId = new URLSearchParams(await readBody(req)).get('login') || '';
      const account = accounts.get(accountId);
      if (!account) return send(res, 200, loginPage(details.uid, 'Unknown user.'));
      if (account.disabled) return send(res, 200, loginPage(details.uid, 'This account is disabled.'));
      return await provider.interactionFinished(req, res, { login: { accountId } }, { mergeWithLastSubmission: false });
    }
    const interaction = url.pathname.match(/^\/interaction\/([^/]+)$/);
    if (interaction && req.method === 'GET') {
      const details = await provider.interactionDetails(req, res);
      return send(res, 200, loginPage(details.uid, ''));
    }
    return callback(req, res);
  } catch (error) {
    console.error(error);
    return send(res, 400, `<p>${escapeHtml(error.message)}</p>`);
  }
});

server.listen(port, '127.0.0.1', () => console.log(`oidc provider listening on ${issuer}`));
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
