/// The page `clipkit serve` shows at `/` with serve.index: type a query or drop an image, see the
/// top results with scores, click an image to search by it. A key in the address's fragment
/// (`/#key=…`) is sent as the bearer token when serve.api_key is set.
let searchPageHTML = #"""
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>clipkit search</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;margin:0;background:#f4f4f6;color:#222}
header{display:flex;gap:8px;align-items:center;padding:14px 18px;background:#1f2430;color:#fff}
header h1{font-size:18px;margin:0 12px 0 0}
#q{flex:1;font-size:16px;padding:8px;border-radius:6px;border:0}
select,button{font-size:15px;padding:7px;border-radius:6px;border:0}
#drop{margin:12px 18px;padding:14px;border:2px dashed #999;border-radius:8px;text-align:center;color:#666}
#drop.over{border-color:#2a7;color:#2a7}
#status{margin:0 18px;color:#555;font-size:14px}
#results{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:12px;padding:12px 18px}
figure{margin:0;background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002;overflow:hidden;cursor:pointer}
figure img{width:100%;height:170px;object-fit:cover;display:block;background:#ddd}
figcaption{padding:6px 8px;font-size:12px;word-break:break-all}
figcaption b{font-size:14px;display:block}
.text figure{cursor:default;padding:10px}
</style></head>
<body>
<header><h1>clipkit search</h1>
<input id="q" placeholder="Describe what you are looking for, then Enter" autofocus>
<select id="modality"><option value="image">images</option><option value="text">texts</option></select>
<button id="go">Search</button></header>
<div id="drop">Drop an image here (or click to choose one) to search by it<input id="file" type="file" accept="image/*" hidden></div>
<p id="status"></p>
<div id="results"></div>
<script>
const $ = id => document.getElementById(id);
const key = new URLSearchParams(location.hash.slice(1)).get("key");
const auth = key ? {"Authorization": "Bearer " + key} : {};
async function search(query) {
  const modality = $("modality").value;
  $("status").textContent = "Searching…";
  const r = await fetch("/v1/search", {method: "POST", headers: {"Content-Type": "application/json", ...auth},
                                        body: JSON.stringify({...query, modality, top_k: 12})});
  const j = await r.json();
  if (!r.ok) { $("status").textContent = j.detail || r.statusText; return; }
  $("status").textContent = j.results.length + " results";
  const grid = $("results");
  grid.className = j.modality;
  grid.replaceChildren(...j.results.map(hit => {
    const fig = document.createElement("figure");
    fig.dataset.row = hit.row;
    fig.dataset.score = hit.score.toFixed(4);
    if (j.modality === "image") {
      const img = document.createElement("img");
      img.alt = hit.name;
      fetch("/v1/index/image/" + hit.row, {headers: auth}).then(x => x.blob()).then(b => { img.src = URL.createObjectURL(b); });
      fig.append(img);
      fig.onclick = () => search({row: hit.row});
    }
    const cap = document.createElement("figcaption");
    const score = document.createElement("b");
    score.textContent = hit.score.toFixed(4);
    cap.append(score, document.createTextNode(hit.name));
    fig.append(cap);
    return fig;
  }));
}
$("q").addEventListener("keydown", e => { if (e.key === "Enter" && $("q").value.trim()) search({text: $("q").value}); });
$("go").onclick = () => { if ($("q").value.trim()) search({text: $("q").value}); };
const drop = $("drop");
drop.onclick = () => $("file").click();
drop.ondragover = e => { e.preventDefault(); drop.classList.add("over"); };
drop.ondragleave = () => drop.classList.remove("over");
function byFile(f) { const rd = new FileReader(); rd.onload = () => search({image: rd.result}); rd.readAsDataURL(f); }
drop.ondrop = e => { e.preventDefault(); drop.classList.remove("over"); if (e.dataTransfer.files[0]) byFile(e.dataTransfer.files[0]); };
$("file").onchange = () => { if ($("file").files[0]) byFile($("file").files[0]); };
const initial = new URLSearchParams(location.search);
if (initial.get("modality")) $("modality").value = initial.get("modality");
if (initial.get("q")) { $("q").value = initial.get("q"); search({text: initial.get("q")}); }
</script>
</body></html>
"""#
