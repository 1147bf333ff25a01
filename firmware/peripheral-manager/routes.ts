/**
 * Every route of the manager, registered on one fastify instance (called once for HTTP and once
 * for HTTPS). Access is declared per route in `config.access`:
 *   'public'  no login (UI files, login/setup, auth state, OpenAPI)
 *   'status'  no login when the publicStatus setting is on, else a session
 *   'admin'   a session; and for every method other than GET/HEAD the CSRF token header and a
 *             same-origin Origin (the default for any route that does not say otherwise)
 * Errors are answered as { error: CODE, message } with a 4xx; nothing is changed on error.
 */
import fastifySwagger from '@fastify/swagger';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { QperiphError } from '../errors.js';
import {
  LegacyXmlError,
  decodeNetworkConfigurationXml,
  encodeStatusXml,
  netmaskFromPrefix,
} from './legacy-xml.js';
import { AuthError, safeEqual, type Session } from './auth.js';
import { EVENT_LEVELS, type EventLevel } from './event-log.js';
import {
  HSTS,
  parseCookies,
  SECURITY_HEADERS,
  sameOrigin,
  SESSION_COOKIE,
  sessionCookie,
} from './http-util.js';
import type { ManagerContext } from './service.js';
import { PkiError } from '../pki/cert-check.js';
import { NetconfigError } from '../netconfig/types.js';
import { defaultDeviceState, StateStoreError } from '../config/state-store.js';

type Access = 'public' | 'status' | 'admin';

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: Access;
  }
  interface FastifyRequest {
    session: Session | null;
  }
}

const CSRF_HEADER = 'x-csrf-token';

const errorBody = {
  type: 'object',
  properties: { error: { type: 'string' }, message: { type: 'string' } },
  required: ['error', 'message'],
} as const;

const fingerprintBody = {
  type: 'object',
  additionalProperties: false,
  required: ['fingerprint256'],
  properties: { fingerprint256: { type: 'string', pattern: '^[0-9A-F]{2}(:[0-9A-F]{2}){31}$' } },
} as const;

const ok = { type: 'object', properties: { ok: { type: 'boolean' } } } as const;

function httpStatusFor(err: unknown): { status: number; code: string; message: string } {
  const e = err as { code?: string; statusCode?: number; message?: string; validation?: unknown };
  if (e.validation) return { status: 400, code: 'BAD_REQUEST', message: e.message ?? 'invalid request' };
  if (err instanceof PkiError) {
    return {
      status: err.code === 'PKI_ERR_IO' ? 500 : err.code === 'PKI_ERR_TOO_LARGE' ? 413 : 422,
      code: err.code,
      message: err.message,
    };
  }
  if (err instanceof NetconfigError) {
    return {
      status: err.code === 'NETCONFIG_ERR_BUSY' ? 409 : err.code === 'NETCONFIG_ERR_IO' ? 500 : 422,
      code: err.code,
      message: err.message,
    };
  }
  if (err instanceof LegacyXmlError)
    return { status: err.code === 'LEGACY_ERR_TOO_LARGE' ? 413 : 400, code: err.code, message: err.message };
  if (err instanceof AuthError) {
    const status =
      err.code === 'AUTH_ERR_ALREADY_SET'
        ? 409
        : err.code === 'AUTH_ERR_BAD_PASSWORD'
          ? 403
          : err.code === 'AUTH_ERR_IO'
            ? 500
            : 422;
    return { status, code: err.code, message: err.message };
  }
  if (err instanceof StateStoreError)
    return { status: err.code === 'STATE_ERR_INVALID' ? 422 : 500, code: err.code, message: err.message };
  if (err instanceof QperiphError) return { status: 400, code: err.code, message: err.message };
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return { status: e.statusCode, code: e.code ?? 'BAD_REQUEST', message: e.message ?? 'bad request' };
  }
  return { status: 500, code: 'INTERNAL', message: 'internal error' };
}

export async function registerRoutes(
  app: FastifyInstance,
  ctx: ManagerContext,
  secure: boolean,
): Promise<void> {
  const { o } = ctx;
  const settings = () => o.state.get().settings;

  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'qperiph Peripheral Manager API', version: '1' },
      components: {
        securitySchemes: {
          session: { type: 'apiKey', in: 'cookie', name: SESSION_COOKIE },
          csrf: { type: 'apiKey', in: 'header', name: CSRF_HEADER },
        },
      },
    },
    hideUntagged: true,
  });

  app.decorateRequest('session', null);

  app.setErrorHandler((err, req, reply) => {
    const { status, code, message } = httpStatusFor(err);
    if (status >= 500) ctx.log.error('request_failed', { err, url: req.url, method: req.method });
    else ctx.log.debug('request_refused', { code, url: req.url, method: req.method });
    void reply.code(status).send({ error: code, message });
  });
  app.setNotFoundHandler((req, reply) => {
    void reply
      .code(404)
      .send({ error: 'NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}` });
  });

  app.addHook('onRequest', async (req, reply) => {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) void reply.header(k, v);
    if (secure) void reply.header('strict-transport-security', HSTS);
    if (!secure && settings().httpRedirectOnly) {
      const host = (req.headers.host ?? o.host).replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
      const port = o.httpsPort === 443 ? '' : `:${o.httpsPort}`;
      const h = host.includes(':') ? `[${host}]` : host;
      return reply.code(301).header('location', `https://${h}${port}${req.url}`).send();
    }
    const access: Access = req.routeOptions.config.access ?? 'admin';
    const sid = parseCookies(req.headers.cookie).get(SESSION_COOKIE);
    req.session = ctx.sessions.get(sid);
    if (access === 'public') return;
    if (access === 'status' && settings().publicStatus) return;
    if (!req.session) {
      // the legacy tools authenticate with HTTP Basic (any user name, the admin password)
      if (req.url.startsWith('/cgi-bin/') && (await basicAuthOk(req))) return;
      return reply.code(401).send({ error: 'AUTH_REQUIRED', message: 'log in first' });
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      const token = req.headers[CSRF_HEADER];
      if (
        typeof token !== 'string' ||
        !safeEqual(token, req.session.csrf) ||
        !sameOrigin(req.headers.origin, req.headers.host)
      ) {
        return reply.code(403).send({ error: 'CSRF', message: 'missing or wrong CSRF token' });
      }
    }
  });

  async function basicAuthOk(req: FastifyRequest): Promise<boolean> {
    const h = req.headers.authorization;
    if (!h?.startsWith('Basic ')) return false;
    if (ctx.limiter.retryAfterMs(req.ip) > 0) return false;
    const decoded = Buffer.from(h.slice(6), 'base64').toString('utf8');
    const pass = decoded.slice(decoded.indexOf(':') + 1);
    const good = await ctx.credentials.verify(pass);
    if (good) ctx.limiter.succeeded(req.ip);
    else ctx.limiter.failed(req.ip);
    return good;
  }

  // --- UI ------------------------------------------------------------------------------------
  const sendUi = (name: string, req: FastifyRequest, reply: FastifyReply) => {
    const f = ctx.ui.get(name);
    if (!f) return reply.code(404).send({ error: 'NOT_FOUND', message: 'no such file' });
    void reply.header('etag', f.etag).header('cache-control', 'no-cache').type(f.type);
    if (req.headers['if-none-match'] === f.etag) return reply.code(304).send();
    return reply.send(f.body);
  };
  app.get('/', { config: { access: 'public' } }, (req, reply) => sendUi('index.html', req, reply));
  app.get('/favicon.ico', { config: { access: 'public' } }, (_req, reply) => reply.code(204).send());
  app.get<{ Params: { file: string } }>('/ui/:file', { config: { access: 'public' } }, (req, reply) =>
    sendUi(req.params.file, req, reply),
  );

  // --- auth ----------------------------------------------------------------------------------
  const tag = (t: string) => ({ tags: [t] });
  const passwordSchema = { type: 'string', minLength: 1, maxLength: 1024 } as const;
  const startSession = (reply: FastifyReply) => {
    const s = ctx.sessions.create();
    void reply.header('set-cookie', sessionCookie(s.id, secure, null));
    return s;
  };
  const loginGuard = (req: FastifyRequest, reply: FastifyReply): boolean => {
    if (!sameOrigin(req.headers.origin, req.headers.host)) {
      void reply.code(403).send({ error: 'CSRF', message: 'cross-origin request refused' });
      return false;
    }
    const wait = ctx.limiter.retryAfterMs(req.ip);
    if (wait > 0) {
      void reply
        .code(429)
        .header('retry-after', String(Math.ceil(wait / 1000)))
        .send({
          error: 'AUTH_RATE_LIMITED',
          message: `too many failed attempts; try again in ${Math.ceil(wait / 1000)} s`,
        });
      return false;
    }
    return true;
  };

  app.get(
    '/api/v1/auth',
    {
      config: { access: 'public' },
      schema: {
        ...tag('auth'),
        summary: 'Whether a password is set and whether this client is logged in',
        response: {
          200: {
            type: 'object',
            properties: {
              passwordSet: { type: 'boolean' },
              loggedIn: { type: 'boolean' },
              csrf: { type: 'string', nullable: true },
              publicStatus: { type: 'boolean' },
            },
          },
        },
      },
    },
    async (req) => ({
      passwordSet: ctx.credentials.isSet,
      loggedIn: req.session !== null,
      csrf: req.session?.csrf ?? null,
      publicStatus: settings().publicStatus,
    }),
  );

  const loginBody = {
    type: 'object',
    additionalProperties: false,
    required: ['password'],
    properties: { password: passwordSchema },
  } as const;
  const loginReply = { 200: { type: 'object', properties: { csrf: { type: 'string' } } }, '4xx': errorBody };

  app.post<{ Body: { password: string } }>(
    '/api/v1/auth/setup',
    {
      config: { access: 'public' },
      schema: {
        ...tag('auth'),
        summary: 'First use: set the admin password',
        body: loginBody,
        response: loginReply,
      },
    },
    async (req, reply) => {
      if (!loginGuard(req, reply)) return reply;
      await ctx.credentials.setInitial(req.body.password);
      ctx.log.info('admin_password_set', { client: req.ip });
      void ctx.events.add('info', 'admin_password_set', `admin password set from ${req.ip}`);
      return { csrf: startSession(reply).csrf };
    },
  );

  app.post<{ Body: { password: string } }>(
    '/api/v1/auth/login',
    {
      config: { access: 'public' },
      schema: {
        ...tag('auth'),
        summary: 'Log in; sets the session cookie',
        body: loginBody,
        response: loginReply,
      },
    },
    async (req, reply) => {
      if (!loginGuard(req, reply)) return reply;
      if (!ctx.credentials.isSet)
        return reply.code(409).send({ error: 'AUTH_ERR_NOT_SET', message: 'no password yet: set one first' });
      if (!(await ctx.credentials.verify(req.body.password))) {
        ctx.limiter.failed(req.ip);
        ctx.log.warn('login_failed', { client: req.ip });
        void ctx.events.add('warn', 'login_failed', `failed login from ${req.ip}`);
        return reply.code(401).send({ error: 'AUTH_ERR_BAD_PASSWORD', message: 'wrong password' });
      }
      ctx.limiter.succeeded(req.ip);
      if (req.session) ctx.sessions.delete(req.session.id);
      ctx.log.info('login', { client: req.ip });
      void ctx.events.add('info', 'login', `login from ${req.ip}${secure ? '' : ' (plain HTTP)'}`);
      return { csrf: startSession(reply).csrf };
    },
  );

  app.post(
    '/api/v1/auth/logout',
    { schema: { ...tag('auth'), summary: 'End the session', response: { 200: ok } } },
    async (req, reply) => {
      if (req.session) ctx.sessions.delete(req.session.id);
      void reply.header('set-cookie', sessionCookie('', secure, 0));
      return { ok: true };
    },
  );

  app.post<{ Body: { current: string; next: string } }>(
    '/api/v1/auth/password',
    {
      schema: {
        ...tag('auth'),
        summary: 'Change the admin password (ends every other session)',
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['current', 'next'],
          properties: { current: passwordSchema, next: passwordSchema },
        },
        response: { 200: loginReply[200], '4xx': errorBody },
      },
    },
    async (req, reply) => {
      await ctx.credentials.change(req.body.current, req.body.next);
      ctx.sessions.clear();
      void ctx.events.add('info', 'admin_password_changed', `admin password changed from ${req.ip}`);
      return { csrf: startSession(reply).csrf };
    },
  );

  // --- status, settings --------------------------------------------------------------------------
  app.get(
    '/api/v1/status',
    {
      config: { access: 'status' },
      schema: { ...tag('status'), summary: 'Device status (public when publicStatus is on)' },
    },
    async () => ctx.status(),
  );

  const settingsSchema = {
    type: 'object',
    additionalProperties: false,
    properties: { httpRedirectOnly: { type: 'boolean' }, publicStatus: { type: 'boolean' } },
  } as const;
  app.get(
    '/api/v1/settings',
    { schema: { ...tag('settings'), response: { 200: settingsSchema } } },
    async () => {
      const s = settings();
      return { httpRedirectOnly: s.httpRedirectOnly, publicStatus: s.publicStatus };
    },
  );
  app.put<{ Body: { httpRedirectOnly?: boolean; publicStatus?: boolean } }>(
    '/api/v1/settings',
    {
      schema: {
        ...tag('settings'),
        summary: 'Change manager settings',
        body: settingsSchema,
        response: { 200: settingsSchema, '4xx': errorBody },
      },
    },
    async (req) => {
      const next = await o.state.update((s) => {
        if (req.body.httpRedirectOnly !== undefined) s.settings.httpRedirectOnly = req.body.httpRedirectOnly;
        if (req.body.publicStatus !== undefined) s.settings.publicStatus = req.body.publicStatus;
      });
      void ctx.events.add('info', 'settings_changed', `settings changed: ${JSON.stringify(req.body)}`);
      return { httpRedirectOnly: next.settings.httpRedirectOnly, publicStatus: next.settings.publicStatus };
    },
  );

  // --- certificates ---------------------------------------------------------------------------------
  app.get(
    '/api/v1/certificate',
    { schema: { ...tag('certificate'), summary: 'The device certificate and its fingerprints' } },
    async () => ctx.identity.info(),
  );
  const nameField = { type: 'string', maxLength: 64 } as const;
  app.post<{ Body: Record<string, unknown> }>(
    '/api/v1/certificate/csr',
    {
      schema: {
        ...tag('certificate'),
        summary: 'Generate a CSR (PEM) for the device key',
        body: {
          type: 'object',
          additionalProperties: false,
          properties: {
            C: nameField,
            ST: nameField,
            L: nameField,
            O: nameField,
            OU: nameField,
            CN: nameField,
            email: { type: 'string', maxLength: 254 },
            ips: { type: 'array', maxItems: 16, items: { type: 'string', maxLength: 45 } },
            dnsNames: { type: 'array', maxItems: 16, items: { type: 'string', maxLength: 253 } },
          },
        },
        response: { 200: { type: 'object', properties: { csr: { type: 'string' } } }, '4xx': errorBody },
      },
    },
    async (req) => {
      const body = Object.fromEntries(Object.entries(req.body).filter(([, v]) => v !== '')) as Record<
        string,
        never
      >;
      return { csr: await ctx.identity.createCsr(body) };
    },
  );
  app.put<{ Body: { pem: string } }>(
    '/api/v1/certificate',
    {
      schema: {
        ...tag('certificate'),
        summary: 'Install a CA-signed certificate chain (PEM, leaf first); hot-reloaded',
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['pem'],
          properties: { pem: { type: 'string', maxLength: 65536 } },
        },
        response: { '4xx': errorBody },
      },
    },
    async (req) => {
      const info = await ctx.identity.install(req.body.pem);
      void ctx.events.add(
        'info',
        'certificate_installed',
        `certificate installed: ${info.leaf.subject}, SHA-256 ${info.leaf.fingerprint256}`,
      );
      return info;
    },
  );
  app.delete(
    '/api/v1/certificate',
    { schema: { ...tag('certificate'), summary: 'Remove the installed certificate (back to self-signed)' } },
    async () => {
      const info = await ctx.identity.remove();
      void ctx.events.add(
        'info',
        'certificate_removed',
        'installed certificate removed; using the self-signed certificate',
      );
      return info;
    },
  );

  // --- secure communication (Cores) --------------------------------------------------------------
  const coreList = {
    type: 'array',
    items: {
      type: 'object',
      properties: {
        name: { type: 'string' },
        fingerprint256: { type: 'string' },
        addedAt: { type: 'string' },
      },
    },
  } as const;
  const coresReply = {
    type: 'object',
    properties: { trusted: coreList, pending: coreList, declined: coreList },
  } as const;
  const cores = () => {
    const s = o.state.get();
    return { trusted: s.trustedCores, pending: s.pendingCores, declined: s.declinedCores };
  };
  app.get(
    '/api/v1/cores',
    {
      schema: {
        ...tag('secure-communication'),
        summary: 'Trusted, pending and declined Cores',
        response: { 200: coresReply },
      },
    },
    async () => cores(),
  );
  app.post<{ Params: { action: 'trust' | 'decline' | 'remove' }; Body: { fingerprint256: string } }>(
    '/api/v1/cores/:action',
    {
      schema: {
        ...tag('secure-communication'),
        summary: 'Trust, decline or remove a Core by certificate fingerprint',
        params: {
          type: 'object',
          properties: { action: { type: 'string', enum: ['trust', 'decline', 'remove'] } },
          required: ['action'],
        },
        body: fingerprintBody,
        response: { 200: coresReply, '4xx': errorBody },
      },
    },
    async (req, reply) => {
      const fp = req.body.fingerprint256;
      const s = o.state.get();
      const all = [...s.trustedCores, ...s.pendingCores, ...s.declinedCores];
      const entry = all.find((c) => c.fingerprint256 === fp);
      if (!entry)
        return reply.code(404).send({ error: 'NOT_FOUND', message: `no Core with fingerprint ${fp}` });
      await o.state.update((d) => {
        d.trustedCores = d.trustedCores.filter((c) => c.fingerprint256 !== fp);
        d.pendingCores = d.pendingCores.filter((c) => c.fingerprint256 !== fp);
        d.declinedCores = d.declinedCores.filter((c) => c.fingerprint256 !== fp);
        if (req.params.action === 'trust') d.trustedCores.push({ ...entry });
        if (req.params.action === 'decline') d.declinedCores.push({ ...entry });
      });
      void ctx.events.add(
        'info',
        `core_${req.params.action}`,
        `Core ${entry.name} (${fp}): ${req.params.action}`,
      );
      return cores();
    },
  );

  // --- identify, reboot, factory reset ----------------------------------------------------------------
  app.post<{ Body: { seconds: number } }>(
    '/api/v1/identify',
    {
      schema: {
        ...tag('device'),
        summary: 'Blink the identify LED for N seconds (0 = stop)',
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['seconds'],
          properties: { seconds: { type: 'integer', minimum: 0, maximum: 3600 } },
        },
        response: {
          200: {
            type: 'object',
            properties: { identify: { type: 'boolean' }, seconds: { type: 'integer' } },
          },
          '4xx': errorBody,
        },
      },
    },
    async (req) => {
      await ctx.setIdentify(req.body.seconds > 0, req.body.seconds);
      return { identify: req.body.seconds > 0, seconds: req.body.seconds };
    },
  );
  app.post(
    '/api/v1/reboot',
    { schema: { ...tag('device'), summary: 'Reboot the device', response: { '4xx': errorBody } } },
    async (req, reply) => {
      if (!o.hooks?.reboot)
        return reply
          .code(501)
          .send({ error: 'NOT_AVAILABLE', message: 'reboot is not available on this device' });
      await ctx.events.add('warn', 'reboot', `reboot requested from ${req.ip}`);
      setImmediate(
        () =>
          void Promise.resolve(o.hooks?.reboot?.()).catch((err) => ctx.log.error('reboot_failed', { err })),
      );
      return reply.code(202).send({ ok: true });
    },
  );
  app.post<{ Body: { confirm: string } }>(
    '/api/v1/factory-reset',
    {
      schema: {
        ...tag('device'),
        summary:
          "Factory reset: forget the password, certificate, trusted Cores and settings. Body must be { confirm: 'factory-reset' }",
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['confirm'],
          properties: { confirm: { type: 'string', enum: ['factory-reset'] } },
        },
        response: { '4xx': errorBody },
      },
    },
    async (req, reply) => {
      await ctx.identity.remove();
      await o.state.update(() => ({ ...defaultDeviceState(), name: o.state.get().name }));
      await ctx.credentials.clear();
      ctx.sessions.clear();
      await ctx.events.add('warn', 'factory_reset', `factory reset from ${req.ip}`);
      void reply.header('set-cookie', sessionCookie('', secure, 0));
      setImmediate(
        () =>
          void Promise.resolve(o.hooks?.factoryReset?.()).catch((err) =>
            ctx.log.error('factory_reset_failed', { err }),
          ),
      );
      return reply.code(202).send({ ok: true });
    },
  );

  // --- event log --------------------------------------------------------------------------------------
  app.get<{ Querystring: { page?: number; pageSize?: number; level?: EventLevel } }>(
    '/api/v1/events',
    {
      schema: {
        ...tag('events'),
        summary: 'The persistent event log, newest first',
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            page: { type: 'integer', minimum: 0, maximum: 100000 },
            pageSize: { type: 'integer', minimum: 1, maximum: 200 },
            level: { type: 'string', enum: [...EVENT_LEVELS] },
          },
        },
      },
    },
    async (req) => ctx.events.page(req.query.page ?? 0, req.query.pageSize ?? 50, req.query.level ?? 'info'),
  );

  // --- network, 802.1X -------------------------------------------------------------------------------
  const lanSchema = {
    type: 'object',
    additionalProperties: false,
    required: ['mode'],
    properties: {
      mode: { type: 'string', enum: ['dhcp', 'static'] },
      address: { type: 'string', maxLength: 15 },
      prefixLength: { type: 'integer' },
      gateway: { type: 'string', maxLength: 15 },
    },
  } as const;
  app.get(
    '/api/v1/network',
    { schema: { ...tag('network'), summary: 'Network and 802.1X settings (secrets redacted)' } },
    async () => ctx.netconfig.snapshot(),
  );
  app.put(
    '/api/v1/network',
    {
      schema: {
        ...tag('network'),
        summary: 'Apply network settings; reverted automatically if connectivity is lost',
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['hostname', 'lanA'],
          properties: {
            hostname: { type: 'string', maxLength: 63 },
            dns: { type: 'array', maxItems: 3, items: { type: 'string', maxLength: 15 } },
            lanA: lanSchema,
            lanB: { anyOf: [lanSchema, { type: 'null' }] },
          },
        },
        response: { '4xx': errorBody },
      },
    },
    async (req) => {
      const snap = await ctx.netconfig.applyNetwork(req.body);
      return snap;
    },
  );
  app.put(
    '/api/v1/dot1x',
    {
      schema: {
        ...tag('network'),
        summary: 'Apply 802.1X settings (EAP-TLS or PEAP-MSCHAPv2) for LAN A',
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['enabled', 'method'],
          properties: {
            enabled: { type: 'boolean' },
            method: { type: 'string', enum: ['peap-mschapv2', 'eap-tls'] },
            identity: { type: 'string', maxLength: 128 },
            anonymousIdentity: { type: 'string', maxLength: 128 },
            password: { type: 'string', maxLength: 128 },
            caCert: { type: 'string', maxLength: 65536 },
            clientCert: { type: 'string', maxLength: 65536 },
            clientKey: { type: 'string', maxLength: 65536 },
          },
        },
        response: { '4xx': errorBody },
      },
    },
    async (req) => ctx.netconfig.applyDot1x(req.body),
  );

  // --- firmware ------------------------------------------------------------------------------------
  app.get(
    '/api/v1/firmware',
    {
      config: { access: 'status' },
      schema: {
        ...tag('firmware'),
        summary: 'Firmware version, slots, and whether bundle upload is available',
      },
    },
    async () => {
      const st = ctx.status() as { firmware: unknown };
      return { ...(st.firmware as object), uploadAvailable: o.hooks?.bundleUpload !== undefined };
    },
  );
  await app.register(async (scope) => {
    // the body is not read here: the update service's node:http handler streams it itself
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_req, _payload, done) => done(null, undefined));
    scope.post(
      '/api/v1/firmware/bundle',
      {
        schema: { ...tag('firmware'), summary: 'Upload a firmware bundle (streamed to the update service)' },
      },
      async (req, reply) => {
        const handler = o.hooks?.bundleUpload;
        if (!handler)
          return reply
            .code(501)
            .send({ error: 'NOT_AVAILABLE', message: 'firmware upload is not available on this build' });
        reply.hijack();
        for (const [k, v] of Object.entries(SECURITY_HEADERS)) reply.raw.setHeader(k, v);
        handler(req.raw, reply.raw);
        return reply;
      },
    );
  });

  // --- OpenAPI ----------------------------------------------------------------------------------------
  app.get('/api/v1/openapi.json', { config: { access: 'public' } }, async () => app.swagger());

  // --- legacy /cgi-bin ---------------------------------------------------------------------------------
  await app.register(async (scope) => {
    scope.addContentTypeParser(
      ['text/xml', 'application/xml'],
      { parseAs: 'buffer', bodyLimit: 16 * 1024 },
      (_req, body, done) => done(null, body),
    );
    scope.get('/cgi-bin/status_xml', { config: { access: 'status' } }, async (_req, reply) => {
      const st = ctx.status() as {
        firmware: { version: string };
        network: {
          lanA: { mac: string | null; address: string | null; netmask: string | null } | null;
          lanB: { mac: string | null; address: string | null; netmask: string | null } | null;
        };
      };
      const net = ctx.netconfig.snapshot().network;
      const iface = (
        name: string,
        live: { address: string | null; netmask: string | null } | null,
        cfg: typeof net.lanA | null,
      ) => ({
        name,
        mode: cfg?.mode === 'static' ? ('static' as const) : ('auto' as const),
        address: live?.address ?? '',
        mask: live?.netmask ?? (cfg?.prefixLength ? netmaskFromPrefix(cfg.prefixLength) : ''),
        gateway: cfg?.gateway ?? '',
      });
      const interfaces = [iface('LAN A', st.network.lanA, net.lanA)];
      if (st.network.lanB) interfaces.push(iface('LAN B', st.network.lanB, net.lanB));
      const xml = encodeStatusXml({
        deviceName: ctx.deviceName(),
        modelPretty: o.board.model,
        firmwareVersion: st.firmware.version,
        mac: st.network.lanA?.mac ?? '',
        prettyName: o.state.get().design?.name ?? '',
        idMode: ctx.identifyUntilMs !== null,
        interfaces,
      });
      return reply.type('text/xml; charset=utf-8').send(xml);
    });
    scope.get<{ Querystring: { mode: 'on' | 'off' } }>(
      '/cgi-bin/id_mode',
      {
        schema: {
          querystring: {
            type: 'object',
            required: ['mode'],
            properties: { mode: { type: 'string', enum: ['on', 'off'] } },
          },
        },
      },
      async (req, reply) => {
        await ctx.setIdentify(req.query.mode === 'on', 600);
        return reply.type('text/xml; charset=utf-8').send(`<id_mode>${req.query.mode}</id_mode>\n`);
      },
    );
    scope.post<{ Body: Buffer }>('/cgi-bin/network_configuration_xml', async (req, reply) => {
      if (!Buffer.isBuffer(req.body))
        return reply.code(415).send({ error: 'UNSUPPORTED_MEDIA_TYPE', message: 'send text/xml' });
      const next = decodeNetworkConfigurationXml(req.body, ctx.netconfig.snapshot().network);
      await ctx.netconfig.applyNetwork(next);
      return reply.type('text/xml; charset=utf-8').send('<result>ok</result>\n');
    });
  });
}
