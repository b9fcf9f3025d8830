// kvsedge console: the single view's timeline (loaded after app.js, whose
// globals it uses: $, api, current, hls, range, view, playFrom, playRange).
//
// A window of the stream's history, from 1 minute to 7 days wide: zoomed
// with the wheel or the buttons, moved by dragging the time axis, the
// ◀ ▶ buttons or shift+wheel, jumped to a day by the date picker. Four
// lanes on one canvas, top to bottom:
//   recorded   the recorded ranges (/listRecordedRanges: fragments merged
//              on the box, less than a pixel apart joined), green; a break
//              between two recordings is a gap (pink)
//   camera     outages: the camera's state changes (/listCameraChanges,
//              kept by the box since it started) where it was not
//              recording, red; STANDBY (recorded by another box) grey
//   hold       the stream's kvsedge:hold tag (the whole stream, or a
//              server-time range), purple
//   upload     on a stream uploaded to an upstream KVS (/describeUploads):
//              recorded media before the oldest fragment not uploaded yet
//              blue, after it orange
// "now" (blue) and the playhead (red) cross all lanes. Hovering shows the
// time, what each lane says there and a thumbnail (GetImages, one request
// at a time, cached per stream); a click plays from there; a drag selects
// a range, plays it, and "Export this range" downloads it as an MP4
// (getClipURL: a download the browser streams to disk). Opening another
// stream clears all of it (tlClear).
'use strict';

const TL_MIN = 60e3, TL_MAX = 7 * 24 * 3600e3;
// tl.ranges: recorded [start, end] (ms), sorted; tl.maxFragMs: the longest
// fragment among them; tl.info: the camera changes, hold and upload of the
// stream shown (null: not known); tl.follow: the window moves with now.
let tl = { from: 0, to: 0, ranges: [], maxFragMs: 0, info: null }, tlPlayhead = null, tlFetch = 0, tlDragging = false;
// tlSel: the selected range [from, to] (ms), or null.
let tlSel = null;
// Hover thumbnails by sample time (ms): data URL, or '' for none.
const tlThumbs = new Map(), TL_THUMBS_MAX = 200;
let tlThumbBusy = false, tlThumbWant = null;
// tlGen counts tlClear calls: an answer for a stream shown before is dropped.
let tlGen = 0;

// Two fragments less than this apart are one recording (no gap), in any
// window: a gap narrower than a pixel is still drawn, as a 1 px marker. A
// window with more gaps than the box lists (maxRanges) is asked again
// with a pixel's worth.
const TL_JOIN_MS = 1000;
// Lanes: [top, height] in canvas pixels.
const LANE = { rec: [0, 36], cam: [38, 10], hold: [50, 10], up: [62, 10] };

function tlReset() { const now = Date.now(); tl = { from: now - 24 * 3600e3, to: now, ranges: [], maxFragMs: 0, info: null, follow: true }; }

// tlClear forgets everything of the stream shown (app.js's stopPlayer).
function tlClear() {
  tlFetch++; tlGen++; tlPlayhead = null; tlSel = null;
  tl.ranges = []; tl.info = null;
  tlThumbs.clear(); tlThumbWant = null;
  const canvas = $('timeline');
  canvas.getContext('2d').clearRect(0, 0, canvas.width, canvas.height);
  delete canvas.dataset.fragments; delete canvas.dataset.gaps; delete canvas.dataset.outages;
  delete canvas.dataset.hold; delete canvas.dataset.upload;
  $('timeline-labels').textContent = '';
  $('tl-hover').hidden = true;
  tlShowSelection();
}

// tlRangeAt is the recorded range holding t, or null.
function tlRangeAt(t) { return tl.ranges.find((r) => r[0] <= t && t < r[1]) || null; }

// tlNextRecording: where the recording at or after t starts within
// [t, end], as far as the timeline knows (null: none known).
function tlNextRecording(t, end) {
  if (!tl.ranges.length || t < tl.from || t > tl.to) return null;
  for (const r of tl.ranges) {
    if (r[1] > t && r[0] <= end) return Math.max(r[0], t);
  }
  return null;
}

// tlHold parses the stream's kvsedge:hold tag as the engine does: true,
// all or empty hold everything, "<RFC 3339>/<RFC 3339>" a range, anything
// else everything (to be safe).
function tlHold(tags) {
  if (!tags || !('kvsedge:hold' in tags)) return null;
  const v = String(tags['kvsedge:hold']).trim();
  if (v === '' || /^(true|all)$/i.test(v)) return { all: true };
  const [a, b] = v.split('/'), from = Date.parse(a), to = Date.parse(b);
  if (b === undefined || isNaN(from) || isNaN(to)) return { all: true };
  return { from, to };
}

// tlOutages: the camera's changes as [from, to, state, error] spans where
// it was not recording (the last one lasts until now).
function tlOutages(changes) {
  const out = [];
  for (let i = 0; i < changes.length; i++) {
    const c = changes[i];
    if (c.state === 'RECORDING') continue;
    const to = i + 1 < changes.length ? Date.parse(changes[i + 1].at) : Date.now();
    out.push([Date.parse(c.at), to, c.state, c.error || '']);
  }
  return out;
}

async function drawTimeline() {
  if (!tl.to) tlReset();
  const s = current, fetchNo = ++tlFetch, { from, to } = tl;
  const pixel = Math.max(TL_JOIN_MS, Math.round((to - from) / $('timeline').width));
  let rec = null, info = null;
  const side = Promise.all([
    api('/listCameraChanges', { StreamName: s.StreamName }).then((r) => r.Changes || []).catch(() => []),
    api('/listTagsForStream', { StreamName: s.StreamName }).then((r) => tlHold(r.Tags)).catch(() => null),
    api('/describeUploads', {}).then((r) => (r.Uploads || []).find((u) => u.stream === s.StreamName) || null).catch(() => null),
  ]);
  try {
    const ranges = (join) => api('/listRecordedRanges', { StreamName: s.StreamName, StartTimestamp: from / 1000, EndTimestamp: to / 1000, JoinMs: join });
    rec = await ranges(TL_JOIN_MS).catch((err) => {
      if (err.type === 'InvalidArgumentException' && pixel > TL_JOIN_MS) return ranges(pixel); // too many gaps to list
      throw err;
    });
    const [changes, hold, upload] = await side;
    info = { outages: tlOutages(changes), changes, hold, upload };
  } catch (err) {
    if (current === s && fetchNo === tlFetch) $('viewer-error').textContent = 'timeline: ' + err.message;
    return;
  }
  if (current !== s || fetchNo !== tlFetch) return; // another stream or window since
  if ($('viewer-error').textContent.startsWith('timeline: ')) $('viewer-error').textContent = '';
  tl.ranges = (rec.Ranges || []).map((r) => [r.Start * 1000, r.End * 1000]); tl.maxFragMs = rec.MaxFragmentMs; tl.info = info;
  const canvas = $('timeline');
  canvas.dataset.fragments = rec.Fragments;
  canvas.dataset.fetches = String(parseInt(canvas.dataset.fetches || '0', 10) + 1);
  canvas.dataset.outages = info.outages.filter((o) => o[1] > from && o[0] < to).length;
  canvas.dataset.hold = info.hold ? (info.hold.all ? 'all' : 'range') : '';
  canvas.dataset.upload = info.upload ? info.upload.state : '';
  paintTimeline();
}

function paintTimeline() {
  const canvas = $('timeline'), g = canvas.getContext('2d'), { from, to } = tl;
  const x = (t) => (t - from) / (to - from) * canvas.width;
  const bar = (a, b, lane, color) => {
    if (b < from || a > to) return;
    const x0 = Math.max(0, x(a)), x1 = Math.min(canvas.width, x(b));
    // At least 2 px: a minute of recording in a week's window still shows.
    g.fillStyle = color; g.fillRect(x0, LANE[lane][0], Math.max(2, x1 - x0), LANE[lane][1]);
  };
  g.clearRect(0, 0, canvas.width, canvas.height);
  g.fillStyle = '#e4e4e4'; g.fillRect(0, LANE.rec[0], canvas.width, LANE.rec[1]);
  let gaps = 0;
  for (const r of tl.ranges) bar(r[0], r[1], 'rec', '#2e9d4f');
  // Gaps over the recordings: at least 1 px (darker when narrower than
  // 2 px), so a gap of seconds shows in a day's window.
  tl.ranges.forEach((r, i) => {
    const next = tl.ranges[i + 1];
    if (!next || next[0] < from || r[1] > to) return;
    gaps++;
    const x0 = Math.max(0, x(r[1])), x1 = Math.min(canvas.width, x(next[0]));
    g.fillStyle = x1 - x0 < 2 ? '#e53935' : '#f6c5c0';
    g.fillRect(Math.min(x0, canvas.width - 1), LANE.rec[0], Math.max(1, x1 - x0), LANE.rec[1]);
  });
  canvas.dataset.gaps = gaps;
  const info = tl.info;
  if (info) {
    for (const [a, b, state] of info.outages) bar(a, b, 'cam', state === 'STANDBY' ? '#9e9e9e' : '#e53935');
    if (info.hold) bar(info.hold.all ? from : info.hold.from, info.hold.all ? to : info.hold.to, 'hold', '#8e24aa');
    const u = info.upload;
    if (u) {
      // Uploaded: what was recorded before the oldest fragment not
      // uploaded yet (all of it when none waits).
      const edge = u.oldest_pending_ms > 0 ? u.oldest_pending_ms : Infinity;
      for (const [a, b] of tl.ranges) {
        if (a < edge) bar(a, Math.min(b, edge), 'up', '#42a5f5');
        if (b > edge) bar(Math.max(a, edge), b, 'up', '#fb8c00');
      }
    }
  }
  if (tlSel) {
    g.fillStyle = 'rgba(21, 101, 192, 0.25)'; g.fillRect(x(tlSel[0]), 0, x(tlSel[1]) - x(tlSel[0]), canvas.height);
    g.fillStyle = '#1565c0'; g.fillRect(x(tlSel[0]) - 1, 0, 2, canvas.height); g.fillRect(x(tlSel[1]) - 1, 0, 2, canvas.height);
  }
  const mark = (t, color) => { if (t >= from && t <= to) { g.fillStyle = color; g.fillRect(x(t) - 1, 0, 2, canvas.height); } };
  mark(Date.now(), '#1565c0');
  if (tlPlayhead) mark(tlPlayhead, '#d32f2f');
  canvas.dataset.from = from; canvas.dataset.to = to;
  const labels = $('timeline-labels'); labels.textContent = '';
  const span = to - from, withDate = span > 20 * 3600e3 || new Date(from).toDateString() !== new Date(to).toDateString();
  for (let i = 0; i <= 4; i++) {
    const t = new Date(from + i * span / 4), el = document.createElement('span');
    el.textContent = withDate ? t.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' })
      : t.toLocaleTimeString();
    labels.appendChild(el);
  }
  $('tl-width').textContent = span >= 86400e3 ? (span / 86400e3).toFixed(1) + ' d' : span >= 3600e3 ? (span / 3600e3).toFixed(1) + ' h'
    : Math.round(span / 60e3) + ' min';
  // The day picker shows the day the window ends in.
  const day = new Date(to - 1), p = (n) => String(n).padStart(2, '0');
  if (document.activeElement !== $('tl-day')) $('tl-day').value = day.getFullYear() + '-' + p(day.getMonth() + 1) + '-' + p(day.getDate());
}

// tlZoom scales the window by k around time at (k < 1 zooms in), within
// 1 minute … 7 days and never past now.
function tlZoom(k, at) {
  const span = Math.min(TL_MAX, Math.max(TL_MIN, (tl.to - tl.from) * k));
  if (at === undefined) {
    // The buttons zoom around the playhead, else "now", when shown (a
    // window that moves with now shows it, though now is a little past
    // its end between two moves).
    const shown = (t) => t !== null && t >= tl.from && t <= tl.to;
    at = shown(tlPlayhead) ? tlPlayhead : tl.follow || shown(Date.now()) ? Date.now() : (tl.from + tl.to) / 2;
  }
  const f = (at - tl.from) / (tl.to - tl.from);
  tlSet(at - f * span, at + (1 - f) * span);
}

function tlSet(from, to) {
  const now = Date.now();
  if (to > now) { from -= to - now; to = now; }
  tl.from = from; tl.to = to;
  tl.follow = to >= now - 1000; // a window up to now moves with it
  // The window follows the playhead only when the playhead walks off its
  // end, never back to it when the user moved the window elsewhere.
  tl.headIn = tlPlayhead !== null && tlPlayhead >= from && tlPlayhead <= to;
  // The window is placed for this session (view): a playhead that shows
  // up later (a live player still connecting) does not take it away.
  tl.headView = view;
  paintTimeline();
  clearTimeout(tlSet.t); tlSet.t = setTimeout(drawTimeline, 150);
}

// tlDay shows one (local) day: midnight to midnight, or to now for today.
function tlDay(value) {
  const [y, m, d] = value.split('-').map(Number);
  if (!y || !m || !d) return;
  const from = new Date(y, m - 1, d).getTime(), to = Math.min(new Date(y, m - 1, d + 1).getTime(), Date.now());
  if (to - from < TL_MIN) { tlSet(to - TL_MIN, to); return; }
  tlSet(from, to);
}

// tlSelect sets the selection (null: none) and shows it.
function tlSelect(sel) { tlSel = sel; tlShowSelection(); if (tl.to) paintTimeline(); }

// tlShowSelection updates the selection's label and buttons.
function tlShowSelection() {
  const has = !!tlSel;
  $('clip-btn').disabled = !has; $('sel-clear').disabled = !has;
  if (!has) { $('sel-label').textContent = 'Click the timeline to play from there, drag to select a range; wheel zooms, drag the time axis to move.'; return; }
  const secs = Math.round((tlSel[1] - tlSel[0]) / 1000);
  const len = secs >= 3600 ? (secs / 3600).toFixed(1) + ' h' : secs >= 60 ? Math.floor(secs / 60) + ' min ' + (secs % 60) + ' s' : secs + ' s';
  $('sel-label').textContent = 'Selected ' + new Date(tlSel[0]).toLocaleString() + ' – ' + new Date(tlSel[1]).toLocaleTimeString() + ' (' + len + ')';
}

// tlHoverText says what the lanes hold at t.
function tlHoverText(t) {
  const lines = [new Date(t).toLocaleString()];
  lines.push(tlRangeAt(t) ? 'recorded' : 'no recording here');
  const info = tl.info;
  if (info) {
    const o = info.outages.find((x) => x[0] <= t && t < x[1]);
    if (o) lines.push('camera ' + o[2] + (o[3] ? ': ' + o[3] : ''));
    if (info.hold && (info.hold.all || (info.hold.from <= t && t < info.hold.to))) lines.push('held (kvsedge:hold)');
    const u = info.upload;
    if (u && tlRangeAt(t)) {
      const up = !(u.oldest_pending_ms > 0) || t < u.oldest_pending_ms;
      lines.push(up ? 'uploaded' : 'not uploaded yet (' + u.state + (u.last_error ? ': ' + u.last_error : '') + ')');
    }
  }
  return lines.join('\n');
}

// tlHover shows the hover box at t (pointer at px in the box): the text,
// and the thumbnail of the recording there, fetched one at a time (the
// newest wish wins) and kept per sample time.
function tlHover(t, px) {
  const box = $('tl-hover'), img = box.querySelector('img'), canvas = $('timeline');
  box.hidden = false;
  box.querySelector('span').textContent = tlHoverText(t);
  box.style.left = Math.max(0, Math.min(px - 120, canvas.clientWidth - 240)) + 'px';
  const r = tlRangeAt(t);
  if (!r) { img.removeAttribute('src'); box.dataset.at = ''; return; }
  // Sample times: ~120 per window, inside the recording.
  const q = Math.max(1000, (tl.to - tl.from) / 120);
  const at = Math.min(Math.max(Math.floor(t / q) * q, r[0]), r[1] - 1);
  box.dataset.at = at;
  if (tlThumbs.has(at)) {
    const src = tlThumbs.get(at);
    if (src) img.src = src; else img.removeAttribute('src');
    return;
  }
  tlThumbWant = at;
  tlThumbNext();
}

async function tlThumbNext() {
  if (tlThumbBusy || tlThumbWant === null) return;
  const at = tlThumbWant, s = current, gen = tlGen;
  tlThumbWant = null; tlThumbBusy = true;
  let src = '';
  try {
    const r = await api('/getImages', { StreamName: s.StreamName, ImageSelectorType: 'SERVER_TIMESTAMP', StartTimestamp: at / 1000,
      EndTimestamp: at / 1000, SamplingInterval: 1000, Format: 'JPEG', WidthPixels: 320, HeightPixels: 180, MaxResults: 1 });
    const im = (r.Images || [])[0];
    if (im && im.ImageContent) src = 'data:image/jpeg;base64,' + im.ImageContent;
    else if (gen === tlGen && $('tl-hover').dataset.at === String(at)) $('tl-hover').querySelector('span').textContent += '\nno thumbnail: ' + (im ? im.Error : 'none');
  } catch (err) {
    if (gen === tlGen) $('tl-hover').querySelector('span').textContent += '\nno thumbnail: ' + err.message;
  } finally {
    tlThumbBusy = false;
  }
  if (gen !== tlGen) return;
  if (tlThumbs.size >= TL_THUMBS_MAX) tlThumbs.delete(tlThumbs.keys().next().value);
  tlThumbs.set(at, src);
  const box = $('tl-hover');
  if (!box.hidden && box.dataset.at === String(at) && src) box.querySelector('img').src = src;
  setTimeout(tlThumbNext, 100); // at most ~10 requests a second while sweeping
}

// tlExport downloads the selection as an MP4: getClipURL (signed) gives a
// short-lived URL of GetClip's MP4 that the browser itself downloads
// (Content-Disposition: attachment), streamed by the box to the disk,
// never held in the page's memory. A range with no recording is said so.
async function tlExport() {
  if (!tlSel || !current) return;
  const s = current, [a, b] = tlSel;
  $('clip-btn').disabled = true; $('sel-label').textContent += ' — exporting…';
  try {
    const r = await api('/getClipURL', { StreamName: s.StreamName, ClipFragmentSelector: { FragmentSelectorType: 'SERVER_TIMESTAMP',
      TimestampRange: { StartTimestamp: a / 1000, EndTimestamp: b / 1000 } } });
    // In a hidden frame, not a link: the box names the file
    // (Content-Disposition), and an answer that is not the MP4 (the URL
    // expired, the box went away) lands in the frame instead of replacing
    // the console, as a link to another origin (a cluster box, the data
    // endpoint) would. The frame goes once the download has long begun.
    const frame = document.createElement('iframe');
    frame.hidden = true; frame.className = 'clip-download'; frame.src = r.ClipURL;
    document.body.appendChild(frame);
    setTimeout(() => frame.remove(), 10 * 60 * 1000);
    if (current === s) $('viewer-error').textContent = '';
  } catch (err) {
    if (current === s) $('viewer-error').textContent = 'export: ' + (noRecording(err) ? 'no recording here: ' : '') + err.message;
  }
  if (current === s) tlShowSelection();
}

(function timelineControls() {
  const canvas = $('timeline'), axis = $('timeline-labels');
  const timeAt = (e) => { const r = canvas.getBoundingClientRect(); return tl.from + (e.clientX - r.left) / r.width * (tl.to - tl.from); };
  canvas.addEventListener('wheel', (e) => {
    e.preventDefault();
    if (e.shiftKey || Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
      const d = (e.shiftKey ? e.deltaY : e.deltaX) / canvas.clientWidth * (tl.to - tl.from);
      tlSet(tl.from + d, tl.to + d);
    } else tlZoom(e.deltaY > 0 ? 1.25 : 0.8, timeAt(e));
  }, { passive: false });
  // On the lanes: a click plays from there, a drag selects a range.
  let down = null;
  canvas.addEventListener('pointerdown', (e) => {
    if (e.button !== 0 || !current) return;
    canvas.setPointerCapture(e.pointerId);
    down = { x: e.clientX, t: timeAt(e), moved: false }; tlDragging = true;
  });
  canvas.addEventListener('pointermove', (e) => {
    const t = timeAt(e);
    if (!down) { if (current && tl.to) tlHover(t, e.clientX - canvas.getBoundingClientRect().left); return; }
    if (Math.abs(e.clientX - down.x) > 3) down.moved = true;
    if (down.moved) {
      tlSel = [Math.min(down.t, t), Math.min(Math.max(down.t, t), Date.now())];
      $('tl-hover').hidden = true; tlShowSelection(); paintTimeline();
    }
  });
  const up = (e) => {
    if (!down) return;
    const d = down; down = null; tlDragging = false;
    if (e.type === 'pointercancel') return;
    if (!d.moved) { playFrom(d.t); return; }
    if (tlSel[1] - tlSel[0] < 1000) tlSel[1] = Math.min(tlSel[0] + 1000, Date.now());
    tlShowSelection(); paintTimeline();
    playRange(tlSel[0], tlSel[1]);
  };
  canvas.addEventListener('pointerup', up);
  canvas.addEventListener('pointercancel', up);
  canvas.addEventListener('pointerleave', () => { $('tl-hover').hidden = true; });
  // On the time axis: a drag moves the window.
  let pan = null;
  axis.addEventListener('pointerdown', (e) => {
    axis.setPointerCapture(e.pointerId); pan = { x: e.clientX, from: tl.from, to: tl.to }; tlDragging = true;
  });
  axis.addEventListener('pointermove', (e) => {
    if (!pan) return;
    const dt = (e.clientX - pan.x) / axis.clientWidth * (pan.to - pan.from);
    tlSet(pan.from - dt, pan.to - dt);
  });
  const panEnd = () => { pan = null; tlDragging = false; };
  axis.addEventListener('pointerup', panEnd);
  axis.addEventListener('pointercancel', panEnd);
  $('tl-in').onclick = () => tlZoom(0.5);
  $('tl-out').onclick = () => tlZoom(2);
  $('tl-back').onclick = () => { const h = (tl.to - tl.from) / 2; tlSet(tl.from - h, tl.to - h); };
  $('tl-fwd').onclick = () => { const h = (tl.to - tl.from) / 2; tlSet(tl.from + h, tl.to + h); };
  $('tl-now').onclick = () => { const span = tl.to - tl.from; tlSet(Date.now() - span, Date.now()); };
  $('tl-day').addEventListener('change', (e) => tlDay(e.target.value));
  $('clip-btn').onclick = () => tlExport();
  $('sel-clear').onclick = () => tlSelect(null);
})();

// The playhead: the date the player shows (program date-time of the
// session), or for sessions without it the start of the range + position.
setInterval(() => {
  if (!current || $('viewer').hidden) return;
  const d = hls && hls.playingDate;
  tlPlayhead = d ? d.getTime() : (hls && range ? range[0] + $('video').currentTime * 1000 : null);
  if (!tl.to) return;
  const span = tl.to - tl.from;
  if (tl.follow && !tlDragging) { const d = Date.now() - tl.to; tl.from += d; tl.to += d; }
  // A new session's playhead outside the window: the window goes to it,
  // once, unless the window was placed since the session started.
  if (tlPlayhead !== null && tl.headView !== view) {
    tl.headView = view;
    if ((tlPlayhead < tl.from || tlPlayhead > tl.to) && !tlDragging) { tlSet(tlPlayhead - 0.2 * span, tlPlayhead + 0.8 * span); return; }
  }
  // Playing past the window's end: the window follows (a page on).
  if (tl.headIn && tlPlayhead !== null && tlPlayhead > tl.to && !tlDragging) {
    tlSet(tlPlayhead - 0.2 * span, tlPlayhead + 0.8 * span);
    return;
  }
  tl.headIn = tlPlayhead !== null && tlPlayhead >= tl.from && tlPlayhead <= tl.to;
  paintTimeline();
}, 500);

// A window that moves with now is fetched again every 10 s (new
// recordings, outages, upload progress), every minute when wider than 6 h
// (the box scans its index for the window's fragments each time).
let tlTicks = 0;
setInterval(() => {
  tlTicks++;
  if (!current || $('viewer').hidden || tlDragging || !tl.follow) return;
  if (tl.to - tl.from <= 6 * 3600e3 || tlTicks % 6 === 0) drawTimeline();
}, 10e3);
