/* global document, WebSocket, location, setTimeout */
// The dashboard's client: one WebSocket, one render per snapshot. No framework, no innerHTML
// with device-provided text (textContent only).
'use strict';

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function render(s) {
  document.getElementById('core-name').textContent = s.core.name;
  const st = document.getElementById('core-state');
  st.textContent = s.core.state + (s.core.redundant ? ' (' + s.core.role + ')' : '');
  st.className = 'badge ' + s.core.state;
  document.getElementById('design').textContent = s.core.designName + ' [' + s.core.designCode + ']';

  const body = document.querySelector('#inventory tbody');
  body.replaceChildren();
  for (const p of s.inventory) {
    const tr = el('tr');
    tr.append(
      el('td', p.name + (p.inDesign ? '' : ' (not in design)')),
      el('td', p.partNumber),
      el('td', p.address || '—'),
      el('td', p.online ? 'online' : 'offline', p.online ? 'ok' : 'bad'),
      el('td', p.link + (p.linkDetail && p.link !== 'connected' ? ': ' + p.linkDetail : ''), p.link),
      el('td', p.version || '—'),
      el('td', p.secure === null ? '—' : p.secure ? 'on' : 'off'),
      el('td', p.configPushed || '—'),
      el('td', p.ptp ? p.ptp.state : '—'),
      el('td', p.streams),
    );
    body.append(tr);
  }

  const meters = document.getElementById('meters');
  meters.replaceChildren();
  for (const p of s.inventory) {
    for (const [name, db] of Object.entries(p.meters)) {
      const row = el('div', null, 'meter');
      const bar = el('div', null, 'bar');
      const fill = el('div', null, 'fill');
      fill.style.width = Math.max(0, Math.min(100, ((db + 60) / 60) * 100)) + '%';
      bar.append(fill);
      row.append(el('span', p.name + ' ' + name, 'label'), bar, el('span', db.toFixed(1) + ' dBFS'));
      meters.append(row);
    }
  }

  const audio = document.getElementById('audio');
  audio.replaceChildren();
  for (const a of s.audio || []) {
    const st = a.stats;
    const head =
      a.peripheral +
      ': ' +
      a.state +
      (a.detail ? ' (' + a.detail + ')' : '') +
      (st
        ? ' · ' +
          st.format +
          ' · sent ' +
          st.txPackets +
          ' / received ' +
          st.rxPackets +
          ' packets · loss ' +
          st.lossPct.toFixed(2) +
          ' % · playout loss ' +
          st.playoutLossPct.toFixed(2) +
          ' %' +
          (st.latency.p50Ms !== null
            ? ' · transit p50 ' +
              st.latency.p50Ms.toFixed(2) +
              ' / p99 ' +
              st.latency.p99Ms.toFixed(2) +
              ' ms'
            : '') +
          ' · ' +
          Math.round(st.meters.receivedHz) +
          ' Hz back'
        : '');
    audio.append(el('div', head, a.state === 'running' ? 'ok' : a.state === 'failed' ? 'bad' : 'standby'));
    if (!st) continue;
    st.meters.received.forEach((lv, i) => {
      const row = el('div', null, 'meter');
      const bar = el('div', null, 'bar');
      const fill = el('div', null, 'fill');
      const db = Number.isFinite(lv.peakDb) ? lv.peakDb : -60; // -Infinity arrives as null
      fill.style.width = Math.max(0, Math.min(100, ((db + 60) / 60) * 100)) + '%';
      bar.append(fill);
      row.append(
        el('span', a.peripheral + ' in ' + (i + 1) + ' → Core', 'label'),
        bar,
        el('span', (Number.isFinite(lv.peakDb) ? lv.peakDb.toFixed(1) : '-∞') + ' dBFS'),
      );
      audio.append(row);
    });
  }
  if (!audio.childElementCount) audio.textContent = 'no audio peer in the design';

  const ptp = document.getElementById('ptp');
  ptp.replaceChildren();
  if (s.ptp) {
    const g = s.ptp;
    ptp.append(
      el(
        'div',
        'Core grandmaster: ' +
          (g.available
            ? g.state + (g.isGrandmaster ? ' (grandmaster ' + g.grandmaster + ')' : '')
            : 'unavailable: ' + g.reason),
        g.isGrandmaster ? 'ok' : 'standby',
      ),
    );
  }
  for (const p of s.inventory) {
    if (!p.ptp) continue;
    ptp.append(
      el(
        'div',
        p.name +
          ': ' +
          p.ptp.state +
          (p.ptp.offsetNs !== null ? ', offset ' + p.ptp.offsetNs + ' ns' : '') +
          (p.ptp.grandmaster ? ', GM ' + p.ptp.grandmaster : ''),
      ),
    );
  }
  if (!ptp.childElementCount) ptp.textContent = 'no PTP status reported';

  const ro = document.getElementById('rollout');
  ro.replaceChildren();
  if (!s.rollout) {
    ro.textContent = 'no rollout';
  } else {
    ro.append(el('div', 'bundle ' + s.rollout.expectVersion + ': ' + s.rollout.state));
    const t = el('table');
    for (const d of s.rollout.devices) {
      const tr = el('tr');
      tr.append(
        el('td', d.id),
        el('td', d.state, d.state),
        el('td', d.version || ''),
        el('td', d.reason || ''),
      );
      t.append(tr);
    }
    ro.append(t);
  }
}

function connect() {
  const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws');
  ws.onmessage = (ev) => render(JSON.parse(ev.data));
  ws.onclose = () => {
    const st = document.getElementById('core-state');
    st.textContent = 'disconnected';
    st.className = 'badge bad';
    setTimeout(connect, 1000);
  };
}
connect();
