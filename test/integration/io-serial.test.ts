/**
 * Serial bridging over real pseudo-terminals: socat makes a PTY pair, the runtime's
 * SerialBridge (@serialport/stream + bindings-cpp) opens one end, the test plays the device on
 * the other, and a Core drives it over the control link on loopback (127.0.1.30, port 17010).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { createSystemClock } from '../../firmware/clock/clock.js';
import { loadBoardConfig } from '../../firmware/config/board-config.js';
import { StateStore } from '../../firmware/config/state-store.js';
import { ControlClient } from '../../firmware/control/client.js';
import { ControlService } from '../../firmware/control/service.js';
import { SerialBridge } from '../../firmware/io/serial-bridge.js';
import { createLinuxSerialBinding } from '../../firmware/io/serial-linux.js';
import { createMemoryLogger } from '../../firmware/log/logger.js';
import { ROOT } from '../helpers/processes.js';

const HOST = '127.0.1.30';
const PORT = 17010;

const haveSocat = spawnSync('socat', ['-V'], { stdio: 'ignore' }).status === 0;

async function until(pred: () => boolean, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!pred() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  return pred();
}

t.test(
  'serial bridged to a Core over a socat PTY pair',
  { skip: haveSocat ? false : 'socat is not installed (apt-get install -y socat)' },
  async (t) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'qperiph-pty-'));
    const ttyA = path.join(dir, 'ttyA');
    const ttyB = path.join(dir, 'ttyB');
    const socat = spawn('socat', [`pty,raw,echo=0,link=${ttyA}`, `pty,raw,echo=0,link=${ttyB}`], {
      stdio: 'ignore',
    });
    t.teardown(() => {
      socat.kill('SIGTERM');
    });
    t.ok(await until(() => existsSync(ttyA) && existsSync(ttyB)), 'PTYs created');

    const board = loadBoardConfig(path.join(ROOT, 'board-configs', 'virtual.json'));
    const ports = [{ name: 'rs232', path: ttyA, defaultBaudRate: 9600 }];
    const logger = createMemoryLogger();
    const binding = createLinuxSerialBinding();
    const bridge = new SerialBridge({ ports, binding, logger });
    const state = await StateStore.open({ dir: path.join(dir, 'state'), logger });
    const svc = new ControlService({
      board,
      state,
      logger,
      clock: createSystemClock(),
      port: PORT,
      host: HOST,
      serial: bridge,
    });
    await svc.start();
    t.teardown(() => svc.stop());

    // The device end of the cable.
    const device = await binding.open(ttyB, { baudRate: 115200, dataBits: 8, parity: 'none', stopBits: 1 });
    let fromCore = Buffer.alloc(0);
    device.onData((d) => (fromCore = Buffer.concat([fromCore, d])));

    const core = await ControlClient.connect({ host: HOST, port: PORT, localAddress: '127.0.1.31' });
    t.teardown(() => core.socket.destroy());
    t.match(await core.call('Serial.Open', { Name: 'rs232', BaudRate: 115200 }), {
      Open: true,
      BaudRate: 115200,
      Path: ttyA,
    });

    // Core -> device: every byte value, in a block bigger than one PTY read.
    const block = Buffer.alloc(4096);
    for (let i = 0; i < block.length; i++) block[i] = i & 0xff;
    await core.call('Serial.Write', { Name: 'rs232', Data: block.toString('base64') });
    t.ok(await until(() => fromCore.length >= block.length), 'all bytes arrived');
    t.ok(fromCore.equals(block), 'byte-exact (raw mode, binary safe)');

    // Device -> Core, as Serial.Data notifications.
    await device.write(Buffer.from('STATUS OK\r\n'));
    const received = (): string =>
      Buffer.concat(
        core.notifications
          .filter((n) => n.method === 'Serial.Data')
          .map((n) => Buffer.from((n.params as { Data: string }).Data, 'base64')),
      ).toString();
    t.ok(await core.waitFor(() => received() === 'STATUS OK\r\n'), 'device bytes reached the Core');

    // Settings change: baud in place, parity/stop bits by reopening; bytes still flow.
    t.match(await core.call('Serial.Configure', { Name: 'rs232', BaudRate: 57600 }), { BaudRate: 57600 });
    t.match(
      await core.call('Serial.Configure', { Name: 'rs232', Parity: 'even', StopBits: 2, DataBits: 7 }),
      {
        Parity: 'even',
        StopBits: 2,
        DataBits: 7,
      },
    );
    fromCore = Buffer.alloc(0);
    await core.call('Serial.Write', { Name: 'rs232', Data: Buffer.from('after reopen').toString('base64') });
    t.ok(await until(() => fromCore.toString() === 'after reopen'), 'bytes flow after reopen');

    // The cable goes away: the Core hears about it.
    socat.kill('SIGTERM');
    t.ok(
      await core.waitFor(() =>
        core.notifications.some((n) => n.method === 'Serial.Closed' || n.method === 'Serial.Error'),
      ),
      'loss of the port is reported',
    );
    t.ok(await until(() => bridge.list()[0]!.open === false), 'port marked closed');
    await device.close().catch(() => undefined);
    await core.close();
  },
);
