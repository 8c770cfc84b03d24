#!/usr/bin/python3
"""A real RTSP server for the ingest tests: GStreamer's gst-rtsp-server (Debian packages python3-gi,
gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-good), serving an H.264 MP4 on 127.0.0.1.

Mounts:
  /clip    the file, looped forever (each client gets its own pipeline from the start)
  /secure  the same, behind HTTP Basic authentication (--user/--password)
Anything else answers 404, like a camera asked for a wrong path.

Prints "READY <port>" on stdout once it listens, so the test knows when to connect.
Run with Debian's /usr/bin/python3: the gi bindings are a Debian package, not a pip one.
"""
import argparse
import signal
import sys

import gi

gi.require_version('Gst', '1.0')
gi.require_version('GstRtspServer', '1.0')
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def loop_forever(_factory, media):
    """Drops the demuxer's end-of-stream and seeks back to the start instead, so the clip plays
    like an endless camera feed: the media never sees EOS, so the RTSP session stays up. The
    stream's timestamps jump back at each loop, as a camera's do after a reset."""
    element = media.get_element()
    demux = element.get_by_name('demux')

    def rewind():
        pipeline = element.get_parent()
        if pipeline is not None:
            pipeline.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0)
        return False

    def on_pad(_demux, pad):
        def probe(_pad, info):
            if info.get_event().type == Gst.EventType.EOS:
                GLib.idle_add(rewind)
                return Gst.PadProbeReturn.DROP
            return Gst.PadProbeReturn.OK

        pad.add_probe(Gst.PadProbeType.EVENT_DOWNSTREAM, probe)

    demux.connect('pad-added', on_pad)


def factory_for(path: str) -> GstRtspServer.RTSPMediaFactory:
    factory = GstRtspServer.RTSPMediaFactory()
    # The MP4's H.264 goes out as it is (no re-encode): qtdemux gives avc access units, which
    # rtph264pay takes directly; config-interval repeats SPS/PPS so a late joiner can decode.
    location = path.replace('\\', '\\\\').replace('"', '\\"')
    factory.set_launch(
        f'( filesrc location="{location}" ! qtdemux name=demux demux.video_0 ! queue '
        '! rtph264pay name=pay0 pt=96 config-interval=1 )'
    )
    # Not shared: every client gets its own pipeline from the start of the clip.
    factory.set_shared(False)
    factory.connect('media-configure', loop_forever)
    return factory


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument('--port', type=int, required=True)
    parser.add_argument('--file', required=True)
    parser.add_argument('--user', default='user')
    parser.add_argument('--password', default='secret')
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address('127.0.0.1')
    server.set_service(str(args.port))

    auth = GstRtspServer.RTSPAuth()
    anonymous = GstRtspServer.RTSPToken()
    anonymous.set_string('media.factory.role', 'anonymous')
    auth.set_default_token(anonymous)
    user = GstRtspServer.RTSPToken()
    user.set_string('media.factory.role', 'user')
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), user)
    server.set_auth(auth)

    allow = 'media.factory.access=(boolean)true, media.factory.construct=(boolean)true'
    mounts = server.get_mount_points()
    open_factory = factory_for(args.file)
    open_factory.add_role_from_structure(Gst.Structure.from_string(f'anonymous, {allow}')[0])
    open_factory.add_role_from_structure(Gst.Structure.from_string(f'user, {allow}')[0])
    mounts.add_factory('/clip', open_factory)
    secure_factory = factory_for(args.file)
    secure_factory.add_role_from_structure(Gst.Structure.from_string(f'user, {allow}')[0])
    # Anonymous clients may see the mount but not open it: DESCRIBE answers 401, as a camera does.
    secure_factory.add_role_from_structure(
        Gst.Structure.from_string('anonymous, media.factory.access=(boolean)true, media.factory.construct=(boolean)false')[0]
    )
    mounts.add_factory('/secure', secure_factory)

    if server.attach(None) == 0:
        print(f'cannot listen on 127.0.0.1:{args.port}', file=sys.stderr)
        return 2
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f'READY {args.port}', flush=True)
    loop.run()
    return 0


if __name__ == '__main__':
    sys.exit(main())
