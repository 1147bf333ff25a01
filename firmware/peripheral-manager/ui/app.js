// Peripheral Manager UI: plain browser JavaScript, no build step. Talks to /api/v1 and the
// live WebSocket; every state change sends the session's CSRF token.
'use strict';
const $ = (id) => document.getElementById(id);
let csrf = null;
let live = null;
let evPage = 0;

function notice(text, isError) {
  const n = $('notice');
  n.textContent = text || '';
  n.className = isError ? 'error' : '';
}

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (csrf && method !== 'GET') headers['x-csrf-token'] = csrf;
  const res = await fetch('/api/v1' + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  const data = res.status === 204 ? null : await res.json().catch(() => null);
  if (res.status === 401 && path !== '/auth/login') {
    showAuth();
  }
  if (!res.ok) throw new Error((data && data.message) || res.statusText);
  return data;
}

function dl(el, rows) {
  el.replaceChildren();
  for (const [k, v] of rows) {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v === null || v === undefined || v === '' ? '—' : String(v);
    el.append(dt, dd);
  }
}

function uptime(s) {
  const d = Math.floor(s / 86400),
    h = Math.floor(s / 3600) % 24,
    m = Math.floor(s / 60) % 60;
  return (d ? d + 'd ' : '') + h + 'h ' + m + 'm ' + (s % 60) + 's';
}

// "booted A, primary A" plus the trial and a running update, or null when no slots are known.
function slotText(f) {
  if (!f.bootedSlot) return null;
  const up = (s) => s.toUpperCase();
  let t = 'booted ' + up(f.bootedSlot);
  if (f.primarySlot) t += ', primary ' + up(f.primarySlot);
  if (f.trialSlot) t += ', trial ' + up(f.trialSlot) + ' (not yet committed)';
  if (f.phase && f.phase !== 'idle') t += ', update: ' + f.phase;
  return t;
}

function renderStatus(st) {
  $('dev-name').textContent = st.name;
  $('dev-model').textContent = st.model;
  const lan = (l) => (l ? (l.address || 'down') + (l.mac ? ' (' + l.mac + ')' : '') : null);
  dl($('status-list'), [
    ['Name', st.name],
    ['Model', st.model + ' (' + st.partNumber + ')'],
    ['Firmware', st.firmware.version],
    ['Slots', slotText(st.firmware)],
    ['LAN A', lan(st.network.lanA)],
    ['LAN B', lan(st.network.lanB)],
    ['Uptime', uptime(st.uptimeS)],
    ['PTP', st.ptp.state + (st.ptp.offsetNs !== null ? ', offset ' + st.ptp.offsetNs + ' ns' : '')],
    ['Grandmaster', st.ptp.grandmaster],
    ['Secure communication', st.secureComm],
    ['Design', st.design ? st.design.name : 'none'],
    ['Identify', st.identify ? 'on' : 'off'],
  ]);
  $('streams').textContent = st.streams.length
    ? st.streams
        .map((s) => s.name + ' (' + s.direction + ', ' + s.channels + ' ch, ' + s.state + ')')
        .join('; ')
    : 'None';
}

function renderMeters(values) {
  const box = $('meters');
  while (box.children.length > values.length) box.lastChild.remove();
  while (box.children.length < values.length) {
    const m = document.createElement('div');
    m.className = 'meter';
    m.innerHTML =
      '<div class="bar" role="meter" aria-valuemin="-60" aria-valuemax="0"><div class="fill"></div></div><span></span>';
    box.append(m);
  }
  values.forEach((db, i) => {
    const m = box.children[i];
    const pct = Math.max(0, Math.min(100, ((db + 60) / 60) * 100));
    m.querySelector('.fill').style.height = pct.toFixed(1) + '%';
    const bar = m.querySelector('.bar');
    bar.setAttribute('aria-valuenow', String(db));
    bar.setAttribute('aria-label', 'Channel ' + (i + 1));
    m.querySelector('span').textContent = db.toFixed(1);
  });
}

function connectLive() {
  if (live) return;
  const ws = new WebSocket(
    (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/api/v1/live',
  );
  live = ws;
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === 'live') {
      renderStatus(msg.status);
      renderMeters(msg.meters);
    }
  };
  ws.onclose = () => {
    live = null;
    if (!$('app').hidden) setTimeout(connectLive, 2000);
  };
}

function showAuth(state) {
  $('app').hidden = true;
  $('logout').hidden = true;
  $('auth').hidden = false;
  const setup = state && !state.passwordSet;
  $('setup-form').hidden = !setup;
  $('login-form').hidden = setup;
  (setup ? $('setup-password') : $('login-password')).focus();
}

async function showApp() {
  $('auth').hidden = true;
  $('app').hidden = false;
  $('logout').hidden = false;
  connectLive();
  route();
}

const loaders = {
  status: async () => renderStatus(await api('GET', '/status')),
  network: async () => {
    const n = await api('GET', '/network');
    const f = $('network-form');
    f.hostname.value = n.network.hostname;
    f.dns.value = n.network.dns.join(', ');
    f.modeA.value = n.network.lanA.mode;
    f.addressA.value = n.network.lanA.address || '';
    f.prefixA.value = n.network.lanA.prefixLength || '';
    f.gatewayA.value = n.network.lanA.gateway || '';
    const d = $('dot1x-form');
    d.enabled.checked = n.dot1x.enabled;
    d.method.value = n.dot1x.method;
    for (const k of ['identity', 'anonymousIdentity', 'password', 'caCert', 'clientCert', 'clientKey'])
      d[k].value = n.dot1x[k] || '';
  },
  certificates: async () => {
    const c = await api('GET', '/certificate');
    dl($('cert-info'), [
      ['Type', c.kind === 'installed' ? 'CA-signed (installed)' : 'Self-signed'],
      ['Issued to', c.leaf.subject],
      ['Issued by', c.leaf.issuer],
      ['Valid', c.leaf.validFrom + ' to ' + c.leaf.validTo],
      ['Names', c.leaf.subjectAltName],
      ['SHA-256', c.leaf.fingerprint256],
      ['SHA-1', c.leaf.fingerprint1],
      ['Chain', c.chain.map((x) => x.subject).join(' ← ') || 'none'],
    ]);
    $('cert-remove').disabled = c.kind !== 'installed';
  },
  secure: async () => {
    const c = await api('GET', '/cores');
    const box = $('cores');
    box.replaceChildren();
    for (const [title, list, actions] of [
      ['Trusted', c.trusted, ['remove']],
      ['Pending', c.pending, ['trust', 'decline']],
      ['Declined', c.declined, ['trust', 'remove']],
    ]) {
      const h = document.createElement('h3');
      h.textContent = title + ' (' + list.length + ')';
      const ul = document.createElement('ul');
      for (const core of list) {
        const li = document.createElement('li');
        li.textContent = core.name + ' — ' + core.fingerprint256 + ' ';
        for (const a of actions) {
          const b = document.createElement('button');
          b.type = 'button';
          b.textContent = a[0].toUpperCase() + a.slice(1);
          b.onclick = () =>
            act(() => api('POST', '/cores/' + a, { fingerprint256: core.fingerprint256 }), 'Done').then(
              loaders.secure,
            );
          li.append(b, ' ');
        }
        ul.append(li);
      }
      box.append(h, ul);
    }
  },
  firmware: async () => {
    const f = await api('GET', '/firmware');
    dl($('fw-info'), [
      ['Version', f.version],
      ['Booted slot', f.bootedSlot ? f.bootedSlot.toUpperCase() : 'unknown'],
      ['Primary slot', f.primarySlot ? f.primarySlot.toUpperCase() : 'unknown'],
      ['Trial slot', f.trialSlot ? f.trialSlot.toUpperCase() + ' (not yet committed)' : 'none'],
      ['Update', f.phase],
    ]);
    $('fw-form').hidden = !f.uploadAvailable;
    $('fw-na').hidden = f.uploadAvailable;
  },
  events: async () => {
    const p = await api('GET', '/events?page=' + evPage + '&pageSize=20&level=' + $('ev-level').value);
    const rows = $('ev-rows');
    rows.replaceChildren();
    for (const e of p.entries) {
      const tr = document.createElement('tr');
      tr.className = 'lvl-' + e.level;
      for (const v of [e.time, e.level, e.message]) {
        const td = document.createElement('td');
        td.textContent = v;
        tr.append(td);
      }
      rows.append(tr);
    }
    const pages = Math.max(1, Math.ceil(p.total / p.pageSize));
    $('ev-page').textContent = 'Page ' + (evPage + 1) + ' of ' + pages;
    $('ev-prev').disabled = evPage === 0;
    $('ev-next').disabled = evPage + 1 >= pages;
  },
  device: async () => {
    const s = await api('GET', '/settings');
    const f = $('settings-form');
    f.httpRedirectOnly.checked = s.httpRedirectOnly;
    f.publicStatus.checked = s.publicStatus;
  },
};

function route() {
  const name = (location.hash || '#status').slice(1);
  const key = name === 'dot1x' ? 'network' : name;
  for (const s of document.querySelectorAll('section[data-section]')) s.hidden = s.dataset.section !== name;
  for (const a of document.querySelectorAll('nav a'))
    a.setAttribute('aria-current', a.getAttribute('href') === '#' + name ? 'page' : 'false');
  if (loaders[key]) loaders[key]().catch((e) => notice(e.message, true));
}

async function act(fn, done) {
  try {
    const r = await fn();
    notice(done);
    return r;
  } catch (e) {
    notice(e.message, true);
    throw e;
  }
}

function on(id, ev, fn) {
  $(id).addEventListener(ev, (e) => {
    if (ev === 'submit') e.preventDefault();
    fn(e).catch(() => undefined);
  });
}

on('setup-form', 'submit', async () => {
  if ($('setup-password').value !== $('setup-repeat').value) return notice('The passwords differ', true);
  const r = await act(
    () => api('POST', '/auth/setup', { password: $('setup-password').value }),
    'Password set',
  );
  csrf = r.csrf;
  await showApp();
});
on('login-form', 'submit', async () => {
  const r = await act(() => api('POST', '/auth/login', { password: $('login-password').value }), 'Logged in');
  csrf = r.csrf;
  $('login-password').value = '';
  await showApp();
});
on('logout', 'click', async () => {
  await api('POST', '/auth/logout', {});
  csrf = null;
  if (live) live.close();
  notice('Logged out');
  showAuth({ passwordSet: true });
});
on('network-form', 'submit', async () => {
  const f = $('network-form');
  const lanA =
    f.modeA.value === 'dhcp'
      ? { mode: 'dhcp' }
      : {
          mode: 'static',
          address: f.addressA.value,
          prefixLength: Number(f.prefixA.value),
          gateway: f.gatewayA.value,
        };
  const dns = f.dns.value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  await act(
    () => api('PUT', '/network', { hostname: f.hostname.value, dns, lanA }),
    'Network settings applied; they are undone automatically if connectivity is lost',
  );
});
on('dot1x-form', 'submit', async () => {
  const f = $('dot1x-form');
  const body = { enabled: f.enabled.checked, method: f.method.value };
  for (const k of ['identity', 'anonymousIdentity', 'password', 'caCert', 'clientCert', 'clientKey'])
    if (f[k].value) body[k] = f[k].value;
  await act(() => api('PUT', '/dot1x', body), '802.1X settings applied');
});
on('cert-file', 'change', async () => {
  const file = $('cert-file').files[0];
  if (file) $('cert-pem').value = await file.text();
});
on('cert-form', 'submit', async () => {
  await act(() => api('PUT', '/certificate', { pem: $('cert-pem').value }), 'Certificate installed');
  $('cert-pem').value = '';
  await loaders.certificates();
});
on('cert-remove', 'click', async () => {
  await act(() => api('DELETE', '/certificate'), 'Certificate removed; using the self-signed certificate');
  await loaders.certificates();
});
on('csr-form', 'submit', async () => {
  const f = $('csr-form');
  const body = {};
  for (const k of ['C', 'ST', 'L', 'O', 'OU', 'CN', 'email']) if (f[k].value) body[k] = f[k].value;
  for (const k of ['ips', 'dnsNames'])
    if (f[k].value)
      body[k] = f[k].value
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
  const r = await act(() => api('POST', '/certificate/csr', body), 'CSR generated');
  $('csr-out').value = r.csr;
});
on('fw-form', 'submit', async () => {
  const file = $('fw-file').files[0];
  if (!file) return notice('Choose a bundle file', true);
  const res = await fetch('/api/v1/firmware/bundle', {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream', 'x-csrf-token': csrf },
    body: file,
  });
  notice(res.ok ? 'Bundle uploaded' : 'Upload failed: ' + res.status, !res.ok);
});
on('ev-level', 'change', async () => {
  evPage = 0;
  await loaders.events();
});
on('ev-prev', 'click', async () => {
  evPage = Math.max(0, evPage - 1);
  await loaders.events();
});
on('ev-next', 'click', async () => {
  evPage++;
  await loaders.events();
});
on('identify-form', 'submit', async () => {
  await act(() => api('POST', '/identify', { seconds: Number($('identify-seconds').value) }), 'Identifying');
});
on('identify-stop', 'click', async () =>
  act(() => api('POST', '/identify', { seconds: 0 }), 'Identify stopped'),
);
on('settings-form', 'submit', async () => {
  const f = $('settings-form');
  await act(
    () =>
      api('PUT', '/settings', {
        httpRedirectOnly: f.httpRedirectOnly.checked,
        publicStatus: f.publicStatus.checked,
      }),
    'Settings saved',
  );
});
on('password-form', 'submit', async () => {
  const f = $('password-form');
  const r = await act(
    () => api('POST', '/auth/password', { current: f.current.value, next: f.next.value }),
    'Password changed',
  );
  csrf = r.csrf;
  f.reset();
});
on('reboot', 'click', async () => {
  if (!confirm('Reboot the device now?')) return;
  await act(() => api('POST', '/reboot', {}), 'Rebooting…');
});
on('factory-reset', 'click', async () => {
  $('reset-confirm').value = '';
  $('reset-dialog').showModal();
});
$('reset-dialog').addEventListener('close', () => {
  if ($('reset-dialog').returnValue !== 'ok') return;
  if ($('reset-confirm').value !== 'factory-reset')
    return notice('Factory reset cancelled: confirmation text did not match', true);
  act(() => api('POST', '/factory-reset', { confirm: 'factory-reset' }), 'Factory reset done').then(
    () => {
      csrf = null;
      showAuth({ passwordSet: false });
    },
    () => undefined,
  );
});
window.addEventListener('hashchange', route);

(async () => {
  try {
    const s = await api('GET', '/auth');
    if (s.loggedIn) {
      csrf = s.csrf;
      await showApp();
    } else {
      showAuth(s);
    }
  } catch (e) {
    notice(e.message, true);
  }
})();
