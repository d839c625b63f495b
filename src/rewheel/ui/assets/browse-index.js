
if (location.protocol.startsWith("http")) {
  document.getElementById("origin").textContent = location.origin;
}
document.getElementById("filter").addEventListener("input", function (ev) {
  const q = ev.target.value.trim().toLowerCase().replace(/[-_.]+/g, "-");
  for (const row of document.querySelectorAll("#projects tbody tr")) {
    row.hidden = q !== "" && !row.dataset.name.includes(q);
  }
});
