// kvsedge console: live players. WebRTC (WHEP, frames as they reach the
// box: sub-second) first; when it cannot play within WEBRTC_WAIT (no
// WebRTC in the browser, UDP blocked, the box's WebRTC off or full, a
// codec WebRTC cannot carry), HLS (hls.js) as before. The player says
// which it uses: video.dataset.transport is 'webrtc' or 'hls', and
// onTransport is told.
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
  const WEBRTC_WAIT = 5000; // ms from the offer to the first decoded frame
  const RTP_WRAP = 2 ** 32;

  // The producer time (epoch ms) of an RTP timestamp: the box stamps
  // video with uint32(producer ms × 90); the period is unwrapped around now.
  function rtpToMs(ts) {
    const k = Math.round((Date.now() * 90 - ts) / RTP_WRAP);
    return (k * RTP_WRAP + ts) / 90;
  }

  function start(video, name, opts) {
    const h = { transport: 'connecting', playingDate: null, destroyed: false, pc: null, whep: null, hls: null, frameCb: 0 };
    const setTransport = (t) => {
      h.transport = t; video.dataset.transport = t;
      if (opts.onTransport) opts.onTransport(t);
    };
    setTransport('connecting');

    function stopWebRTC() {
      if (h.frameCb && video.cancelVideoFrameCallback) video.cancelVideoFrameCallback(h.frameCb);
      h.frameCb = 0;
      if (h.pc) { h.pc.close(); h.pc = null; }
      if (h.whep) { fetch(h.whep, { method: 'DELETE', keepalive: true }).catch(() => {}); h.whep = null; }
      if (video.srcObject) { video.srcObject = null; }
    }

    async function tryWebRTC() {
      if (!window.RTCPeerConnection) throw new Error('no WebRTC in this browser');
      const r = await opts.api('/getWHEPSessionURL', { StreamName: name });
      if (h.destroyed) return false;
      const pc = new RTCPeerConnection();
      h.pc = pc;
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
      if (h.destroyed) return false;
      const resp = await fetch(r.WHEPSessionURL, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
      const answer = await resp.text();
      if (resp.status !== 201) throw new Error('WHEP ' + resp.status + ': ' + answer.slice(0, 200));
      const loc = resp.headers.get('Location');
      if (loc) h.whep = new URL(loc, r.WHEPSessionURL).href;
      if (h.destroyed) { stopWebRTC(); return false; }
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
      video.srcObject = stream;
      video.play().catch(() => {});
      // Playing means a frame decoded, not just a connection.
      await new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('WebRTC did not play within ' + WEBRTC_WAIT / 1000 + ' s')), WEBRTC_WAIT);
        const check = () => {
          const q = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
          if ((q && q.totalVideoFrames > 0) || video.readyState >= 2) { clearTimeout(t); resolve(); return; }
          if (pc.connectionState === 'failed') { clearTimeout(t); reject(new Error('WebRTC connection failed')); return; }
          setTimeout(check, 100);
        };
        check();
      });
      if (h.destroyed) return false;
      // The clock: the presented frame's RTP timestamp is its producer time.
      if (video.requestVideoFrameCallback) {
        const onFrame = (now, meta) => {
          if (meta && meta.rtpTimestamp !== undefined) h.playingDate = new Date(rtpToMs(meta.rtpTimestamp));
          h.frameCb = video.requestVideoFrameCallback(onFrame);
        };
        h.frameCb = video.requestVideoFrameCallback(onFrame);
      }
      // A connection lost later: start again (WebRTC, else HLS).
      pc.addEventListener('connectionstatechange', () => {
        if (h.pc === pc && (pc.connectionState === 'failed' || pc.connectionState === 'closed')) { stopWebRTC(); run(); }
      });
      setTransport('webrtc');
      return true;
    }

    async function startHLS() {
      const r = await opts.api('/getHLSStreamingSessionURL', opts.hlsBody);
      if (h.destroyed) return;
      const hls = new Hls({ lowLatencyMode: true, liveSyncDurationCount: 2 });
      h.hls = hls;
      hls.on(Hls.Events.ERROR, (e, d) => { if (d.fatal && opts.onError) opts.onError('player error: ' + d.details); });
      hls.loadSource(r.HLSStreamingSessionURL); hls.attachMedia(video);
      hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch(() => {}));
      if (opts.onHLS) opts.onHLS(r.HLSStreamingSessionURL);
      setTransport('hls');
    }

    async function run() {
      setTransport('connecting');
      if (opts.only === 'hls') { h.webrtcError = 'HLS only'; return startHLS().catch((err) => { if (!h.destroyed && opts.onError) opts.onError(err.message); }); }
      try {
        if (await tryWebRTC()) return;
        if (h.destroyed) return;
      } catch (err) {
        h.webrtcError = err.message;
        stopWebRTC();
        if (h.destroyed) return;
        if (opts.only === 'webrtc') { setTransport('none'); if (opts.onError) opts.onError(err.message); return; }
      }
      try { await startHLS(); } catch (err) {
        if (h.destroyed) return;
        setTransport('none');
        if (opts.onFail) opts.onFail(err.message, err); else if (opts.onError) opts.onError(err.message);
      }
    }

    Object.defineProperty(h, 'playingDate', {
      get() { return h.transport === 'hls' ? (h.hls ? h.hls.playingDate : null) : h._date; },
      set(d) { h._date = d; },
    });
    h.destroy = () => {
      h.destroyed = true;
      stopWebRTC();
      if (h.hls) { h.hls.destroy(); h.hls = null; }
      delete video.dataset.transport;
    };
    run();
    return h;
  }

  return { start, rtpToMs };
})();
