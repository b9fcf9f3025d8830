// kvsedge console: live players. WebRTC (WHEP, frames as they reach the
// box: sub-second) first; when it cannot play (no WebRTC in the browser,
// UDP blocked, the box's WebRTC off or full, a codec WebRTC cannot carry,
// no frame decoded in time), HLS (hls.js) as before. While on HLS after a
// WebRTC attempt that may succeed later (not: no WebRTC here, WebRTC off
// on the box, a codec it cannot carry), WebRTC is tried again in the
// background (RETRY_FIRST, doubling to RETRY_MAX): the HLS picture stays
// until the new connection has decoded a frame, then WebRTC takes over.
// So a first attempt that lost the race with a loaded machine, or a path
// that comes back, ends on WebRTC. The player says which it uses:
// video.dataset.transport is 'webrtc' or 'hls', and onTransport is told;
// video.dataset.webrtcTries counts the attempts.
//
// kvsLive.start(video, streamName, opts) returns a handle shaped like an
// hls.js instance where the console uses one: destroy(), playingDate (the
// producer time of the frame on screen, a Date, or null), plus transport.
// opts: api (the console's signed API call), hlsBody (the
// GetHLSStreamingSessionURL request), onTransport(name), onHLS(url),
// onError(message) (a player error), onFail(message) (neither WebRTC nor
// HLS could start; onError when not given), only ('webrtc' or 'hls': no
// fallback, for measurements).
'use strict';
const kvsLive = (() => {
  // ms from the offer to the first decoded frame; a connection that is up
  // by then (ICE and DTLS done: media flows) gets until WEBRTC_WAIT_CONNECTED.
  const WEBRTC_WAIT = 5000, WEBRTC_WAIT_CONNECTED = 12000;
  const RETRY_FIRST = 10000, RETRY_MAX = 60000; // background WebRTC retries while on HLS
  const RTP_WRAP = 2 ** 32;

  // The producer time (epoch ms) of an RTP timestamp: the box stamps
  // video with uint32(producer ms × 90); the period is unwrapped around now.
  function rtpToMs(ts) {
    const k = Math.round((Date.now() * 90 - ts) / RTP_WRAP);
    return (k * RTP_WRAP + ts) / 90;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function start(video, name, opts) {
    // att: the WebRTC attempt playing (or starting) in the player; probe:
    // one trying in the background behind HLS. An attempt is { el (the
    // element its stream plays in: the player's, or a detached one for a
    // probe), pc, whep (its session URL), closed }.
    const h = { transport: 'connecting', destroyed: false, att: null, probe: null, hls: null, frameCb: 0,
      retryTimer: 0, retryMs: RETRY_FIRST, tries: 0 };
    const setTransport = (t) => {
      h.transport = t; video.dataset.transport = t;
      if (opts.onTransport) opts.onTransport(t);
    };
    setTransport('connecting');

    function closeAttempt(a) {
      if (!a) return;
      a.closed = true;
      if (a.pc) { a.pc.close(); a.pc = null; }
      if (a.whep) { fetch(a.whep, { method: 'DELETE', keepalive: true }).catch(() => {}); a.whep = null; }
      if (a.el !== video) a.el.srcObject = null;
    }

    function stopWebRTC() {
      if (h.frameCb && video.cancelVideoFrameCallback) video.cancelVideoFrameCallback(h.frameCb);
      h.frameCb = 0;
      closeAttempt(h.att); h.att = null;
      if (video.srcObject) { video.srcObject = null; }
    }

    // decoded: a frame of a's stream has been decoded.
    async function decoded(a) {
      const v = a.el, q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : null;
      if ((q && q.totalVideoFrames > 0) || v.readyState >= 2) return true;
      if (a.el === video || !a.pc) return false;
      // A detached element may not render: the receiver's own count.
      for (const x of (await a.pc.getStats()).values()) {
        if (x.type === 'inbound-rtp' && x.kind === 'video' && x.framesDecoded > 0) return true;
      }
      return false;
    }

    // connect runs attempt a up to its first decoded frame: true when it
    // plays, false when it was dropped on the way (destroyed, closed); an
    // error when it cannot play (err.permanent: retrying cannot help).
    async function connect(a) {
      if (!window.RTCPeerConnection) throw Object.assign(new Error('no WebRTC in this browser'), { permanent: true });
      video.dataset.webrtcTries = String(++h.tries);
      let r;
      try { r = await opts.api('/getWHEPSessionURL', { StreamName: name }); } catch (err) {
        err.permanent = /disabled/.test(err.message); throw err;
      }
      if (h.destroyed || a.closed) return false;
      const pc = new RTCPeerConnection();
      a.pc = pc;
      pc.addTransceiver('video', { direction: 'recvonly' });
      pc.addTransceiver('audio', { direction: 'recvonly' });
      const stream = new MediaStream();
      pc.ontrack = (e) => { stream.addTrack(e.track); };
      await pc.setLocalDescription(await pc.createOffer());
      // Every candidate in the offer (the box does not trickle).
      await new Promise((resolve) => {
        if (pc.iceGatheringState === 'complete') return resolve();
        const t = setTimeout(resolve, 1500);
        pc.addEventListener('icegatheringstatechange', () => { if (pc.iceGatheringState === 'complete') { clearTimeout(t); resolve(); } });
      });
      if (h.destroyed || a.closed) return false;
      const resp = await fetch(r.WHEPSessionURL, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
      const answer = await resp.text();
      const loc = resp.headers.get('Location');
      if (resp.status === 201 && loc) a.whep = new URL(loc, r.WHEPSessionURL).href;
      if (resp.status !== 201) {
        // The box cannot send this stream's codecs, or has WebRTC off:
        // no retry. Full (503) or no live frame yet (404): later.
        throw Object.assign(new Error('WHEP ' + resp.status + ': ' + answer.slice(0, 200)),
          { permanent: resp.status === 415 || resp.status === 406 || (resp.status === 404 && /disabled/.test(answer)) });
      }
      if (h.destroyed || a.closed) return false;
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
      a.el.srcObject = stream;
      a.el.play().catch(() => {});
      // Playing means a frame decoded, not just a connection. A loaded
      // machine may take longer than WEBRTC_WAIT to decode the first key
      // frame: a connection that is up keeps its chance.
      for (const t0 = Date.now(); ; await sleep(100)) {
        if (h.destroyed || a.closed) return false;
        if (await decoded(a)) return true;
        const st = pc.connectionState, waited = Date.now() - t0;
        if (st === 'failed' || st === 'closed') throw new Error('WebRTC connection ' + st);
        if (waited > WEBRTC_WAIT_CONNECTED || (waited > WEBRTC_WAIT && st !== 'connected')) {
          throw new Error('WebRTC did not play within ' + Math.round(waited / 1000) + ' s (connection ' + st + ')');
        }
      }
    }

    // goLive makes attempt a, which has decoded a frame, the player's:
    // HLS (if any) goes first, then its stream plays in the player.
    function goLive(a) {
      if (a.el !== video) {
        if (h.hls) { h.hls.destroy(); h.hls = null; }
        video.removeAttribute('src');
        video.srcObject = a.el.srcObject; a.el.srcObject = null; a.el = video;
        video.play().catch(() => {});
      }
      h.att = a;
      // The clock: the presented frame's RTP timestamp is its producer time.
      if (video.requestVideoFrameCallback) {
        const onFrame = (now, meta) => {
          if (meta && meta.rtpTimestamp !== undefined) h.playingDate = new Date(rtpToMs(meta.rtpTimestamp));
          h.frameCb = video.requestVideoFrameCallback(onFrame);
        };
        h.frameCb = video.requestVideoFrameCallback(onFrame);
      }
      // A connection lost later: start again (WebRTC, else HLS).
      const pc = a.pc;
      pc.addEventListener('connectionstatechange', () => {
        if (h.att === a && (pc.connectionState === 'failed' || pc.connectionState === 'closed')) { stopWebRTC(); run(); }
      });
      h.retryMs = RETRY_FIRST;
      setTransport('webrtc');
    }

    // scheduleRetry tries WebRTC again later, behind HLS, unless err says
    // it cannot work here.
    function scheduleRetry(err) {
      if (h.destroyed || opts.only || (err && err.permanent)) return;
      clearTimeout(h.retryTimer);
      h.retryTimer = setTimeout(probe, h.retryMs);
      h.retryMs = Math.min(h.retryMs * 2, RETRY_MAX);
    }

    async function probe() {
      if (h.destroyed || h.transport !== 'hls' || h.probe) return;
      const el = document.createElement('video');
      el.muted = true; el.playsInline = true;
      const a = { el, pc: null, whep: null, closed: false };
      h.probe = a;
      try {
        if (await connect(a) && h.probe === a && !h.destroyed && h.transport === 'hls') { h.probe = null; goLive(a); return; }
      } catch (err) {
        h.webrtcError = err.message;
        if (h.probe === a) { h.probe = null; closeAttempt(a); scheduleRetry(err); }
        return;
      }
      if (h.probe === a) h.probe = null;
      closeAttempt(a);
    }

    async function startHLS() {
      const r = await opts.api('/getHLSStreamingSessionURL', opts.hlsBody);
      if (h.destroyed) return;
      const hls = new Hls({ lowLatencyMode: true, liveSyncDurationCount: 2 });
      h.hls = hls;
      hls.on(Hls.Events.ERROR, (e, d) => { if (d.fatal && opts.onError && h.hls === hls) opts.onError('player error: ' + d.details); });
      hls.loadSource(r.HLSStreamingSessionURL); hls.attachMedia(video);
      hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch(() => {}));
      if (opts.onHLS) opts.onHLS(r.HLSStreamingSessionURL);
      setTransport('hls');
    }

    async function run() {
      setTransport('connecting');
      if (opts.only === 'hls') { h.webrtcError = 'HLS only'; return startHLS().catch((err) => { if (!h.destroyed && opts.onError) opts.onError(err.message); }); }
      const a = { el: video, pc: null, whep: null, closed: false };
      h.att = a;
      let failed = null;
      try {
        if (await connect(a)) { if (!h.destroyed && h.att === a) goLive(a); return; }
        if (h.destroyed) return;
      } catch (err) {
        failed = err;
        h.webrtcError = err.message;
        if (h.att === a) stopWebRTC(); else closeAttempt(a);
        if (h.destroyed) return;
        if (opts.only === 'webrtc') { setTransport('none'); if (opts.onError) opts.onError(err.message); return; }
      }
      try { await startHLS(); } catch (err) {
        if (h.destroyed) return;
        setTransport('none');
        if (opts.onFail) opts.onFail(err.message, err); else if (opts.onError) opts.onError(err.message);
        return;
      }
      scheduleRetry(failed);
    }

    Object.defineProperty(h, 'playingDate', {
      get() { return h.transport === 'hls' ? (h.hls ? h.hls.playingDate : null) : h._date; },
      set(d) { h._date = d; },
    });
    h.destroy = () => {
      h.destroyed = true;
      clearTimeout(h.retryTimer);
      if (h.probe) { closeAttempt(h.probe); h.probe = null; }
      stopWebRTC();
      if (h.hls) { h.hls.destroy(); h.hls = null; }
      delete video.dataset.transport;
    };
    run();
    return h;
  }

  return { start, rtpToMs };
})();
