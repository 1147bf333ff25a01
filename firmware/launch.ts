/**
 * Entry point of the app-slot launcher: `node dist/firmware/launch.js --app-root DIR -- <cli args>`
 * (firmware/update/launch.ts). systemd runs this; it runs the booted slot's runtime.
 */
import { launchMain } from './update/launch.js';

await launchMain(process.argv.slice(2));
