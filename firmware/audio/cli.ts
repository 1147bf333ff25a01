/**
 * `qperiph audio ...`: operator tools for the audio engine (hooked into firmware/cli.ts).
 * Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.
 */
import { parseArgs } from 'node:util';
import { createSystemClock } from '../clock/clock.js';
import { loadBoardConfig } from '../config/board-config.js';
import { createMemoryLogger } from '../log/logger.js';
import { createAudioDatagramBinding } from './audio-datagram.js';
import { sine } from './dsp.js';
import { createFreeRunningClock } from './media-clock.js';
import { needsPhc2sys, phc2sysArgs, ptp4lConfig } from './ptp.js';
import { qlanFormat, QLAN_PAYLOAD_TYPE, type AudioFormat } from './rtp-codec.js';
import { SapService } from './sap-service.js';
import { encodeSdp } from './sdp-codec.js';
import { isMulticast, RtpSender } from './sender.js';

export const AUDIO_HELP = `Usage: qperiph audio <tool> [options]

Tools:
  ptp-config --board FILE [--interface IF] [--uds PATH]
        print the ptp4l configuration the runtime generates for this board (AES67 profile)
  sap-listen --interface ADDR [--seconds N]
        listen for SAP/SDP announcements (239.255.255.255:9875) on the interface with local
        address ADDR and print each session heard as a JSON line
  tone --dest ADDR:PORT --bind ADDR [--kind qlan|aes67] [--channels N] [--freq HZ]
       [--seconds N] [--frames 6|12|16|48]
        send a sine tone as a Q-LAN (float32, 16 frames) or AES67 (L24) RTP stream, paced by a
        worker thread; for AES67 prints the SDP to subscribe with. Multicast leaves through
        the --bind address.
`;

function endpoint(s: string | undefined): { address: string; port: number } | null {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(s ?? '');
  return m ? { address: m[1]!, port: Number(m[2]) } : null;
}

export async function runAudioCli(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  void env;
  const [tool, ...rest] = argv;
  if (!tool || tool === '--help' || tool === '-h') {
    process.stdout.write(AUDIO_HELP);
    return tool ? 0 : 2;
  }
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args: rest,
      options: {
        board: { type: 'string' },
        interface: { type: 'string' },
        uds: { type: 'string' },
        seconds: { type: 'string' },
        dest: { type: 'string' },
        bind: { type: 'string' },
        kind: { type: 'string' },
        channels: { type: 'string' },
        freq: { type: 'string' },
        frames: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }).values;
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n${AUDIO_HELP}`);
    return 2;
  }
  if (values['help']) {
    process.stdout.write(AUDIO_HELP);
    return 0;
  }
  try {
    switch (tool) {
      case 'ptp-config': {
        if (typeof values['board'] !== 'string') throw new Error('--board FILE is required');
        const board = loadBoardConfig(values['board']);
        const o = {
          ptp: board.ptp,
          interface: (values['interface'] as string | undefined) ?? board.network.lanA.interface,
          udsPath: (values['uds'] as string | undefined) ?? '/run/qperiph/ptp4l',
        };
        process.stdout.write(ptp4lConfig(o));
        // A PHC needs phc2sys to steer the system clock (the runtime supervises it).
        if (needsPhc2sys(o))
          process.stdout.write(
            `# with it: phc2sys ${phc2sysArgs({ ...o, domain: o.ptp.domain }).join(' ')}\n`,
          );
        return 0;
      }
      case 'sap-listen': {
        const iface = values['interface'];
        if (typeof iface !== 'string') throw new Error('--interface ADDR is required');
        const seconds = Number(values['seconds'] ?? 10);
        const sap = new SapService({
          binding: createAudioDatagramBinding(),
          clock: createSystemClock(),
          logger: createMemoryLogger(),
          interfaceAddress: iface,
          onSession: (event, s) =>
            process.stdout.write(JSON.stringify({ event, origin: s.origin, sdp: s.sdp }) + '\n'),
        });
        await sap.start();
        await new Promise((r) => setTimeout(r, seconds * 1000));
        await sap.close();
        return 0;
      }
      case 'tone': {
        const dest = endpoint(values['dest'] as string | undefined);
        const bind = values['bind'];
        if (!dest || typeof bind !== 'string')
          throw new Error('--dest ADDR:PORT and --bind ADDR are required');
        const kind = (values['kind'] as string | undefined) ?? 'aes67';
        const channels = Number(values['channels'] ?? 2);
        const frames = Number(values['frames'] ?? 48);
        const format: AudioFormat =
          kind === 'qlan' ? qlanFormat(channels) : { encoding: 'L24', channels, framesPerPacket: frames };
        const clock = createFreeRunningClock();
        const seconds = Number(values['seconds'] ?? 10);
        const pt = kind === 'qlan' ? QLAN_PAYLOAD_TYPE : 96;
        const sender = new RtpSender({
          format,
          payloadType: pt,
          destination: dest,
          bindAddress: bind,
          multicastInterface: isMulticast(dest.address) ? bind : null,
          ssrc: (Math.random() * 2 ** 32) >>> 0,
          clock,
        });
        if (kind === 'aes67')
          process.stdout.write(
            encodeSdp({
              sessionId: String(Date.now()),
              sessionVersion: '1',
              origin: bind,
              name: 'qperiph tone',
              destination: dest.address,
              ttl: 32,
              port: dest.port,
              payloadType: pt,
              encoding: 'L24',
              channels,
              rate: 48000,
              ptimeMs: frames / 48,
              framesPerPacket: frames,
              ptp: null,
              mediaclkOffset: 0,
              info: '',
            }),
          );
        const block = new Float32Array(480 * channels);
        let phase = 0;
        const fill = (): void => {
          while (sender.space() >= 480) {
            phase = sine(block, 480, channels, Number(values['freq'] ?? 1000), 0.5, phase);
            sender.write(block, 480);
          }
        };
        fill();
        const iv = setInterval(fill, 5);
        try {
          await sender.start();
          await new Promise((r) => setTimeout(r, seconds * 1000));
        } finally {
          clearInterval(iv);
          await sender.stop();
        }
        process.stderr.write(JSON.stringify(sender.counters()) + '\n');
        return 0;
      }
      default:
        process.stderr.write(`unknown audio tool ${tool}\n${AUDIO_HELP}`);
        return 2;
    }
  } catch (e) {
    process.stderr.write(`qperiph audio ${tool}: ${(e as Error).message}\n`);
    return (e as { code?: string }).code?.startsWith('CONFIG') || /required/.test((e as Error).message)
      ? 2
      : 1;
  }
}
