import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../config/schema.js';
import { FacestreamError } from '../errors.js';
import { enrollDirectory, folderIdentityId, listIdentityFolders, type DirEnrollSummary } from '../index/enroll-dir.js';
import { PACKAGE_ROOT } from '../paths.js';
import type { RunningServer } from './server.js';

/** The demo's camera: the Hamilton clip, looped like a live camera. */
export const DEMO_STREAM_ID = 'demo';

export interface DemoPaths {
  video: string;
  faces: string;
}

/** Where the demo material is: config server.demo.*, else FACESTREAM_DATA / ../shared/data beside the package. */
export function demoPaths(config: Config): DemoPaths {
  const demo = config.server.demo;
  const data = path.resolve(demo.dataDir ?? path.join(PACKAGE_ROOT, '..', 'shared', 'data'));
  const video = path.resolve(demo.video ?? path.join(data, 'video', 'hamilton_640x360.mp4'));
  const faces = path.resolve(demo.faces ?? path.join(data, 'faces'));
  if (!fs.existsSync(video)) {
    throw new FacestreamError('FILE_NOT_FOUND', `demo video ${video} not found: put the shared data beside the package (../shared/data), or set FACESTREAM_DATA or server.demo.video`, { file: video });
  }
  return { video, faces };
}

/** "lin_manuel_miranda" -> "Lin Manuel Miranda". */
export function displayName(folder: string): string {
  return folder
    .split(/[_\s-]+/)
    .filter(Boolean)
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join(' ');
}

/**
 * Sets the demo up on a running server: when the gallery is empty, enrolls every person in the
 * faces folder (one identity per sub-folder); adds the looped clip as stream "demo" unless a
 * stream of that id exists (a restart keeps what the user changed).
 */
export async function setupDemo(server: RunningServer, paths: DemoPaths): Promise<{ enrolled: DirEnrollSummary | null; streamCreated: boolean }> {
  const { gallery, galleryWriter, enroller, streams } = server.ctx;
  let enrolled: DirEnrollSummary | null = null;
  if (gallery.counts().identities === 0 && fs.existsSync(paths.faces)) {
    for (const { identity } of listIdentityFolders(paths.faces)) {
      await galleryWriter.createIdentity({ id: folderIdentityId(identity), name: displayName(identity) });
    }
    enrolled = await enrollDirectory(enroller, paths.faces);
  }
  let streamCreated = false;
  if (!streams.has(DEMO_STREAM_ID)) {
    await streams.create({ id: DEMO_STREAM_ID, name: 'Demo camera (Hamilton clip, looped)', url: paths.video, loop: true, realtime: true, fps: 15 });
    streamCreated = true;
  }
  return { enrolled, streamCreated };
}
