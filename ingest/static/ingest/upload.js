// Drag-and-drop onto the upload form's file input; without this script the input works as usual.
(function () {
  "use strict";
  var zone = document.getElementById("dropzone");
  if (!zone) return;
  var input = zone.querySelector("input[type=file]");
  var list = document.getElementById("chosen-files");

  function show(files) {
    list.textContent = "";
    for (var i = 0; i < files.length; i++) {
      var item = document.createElement("li");
      item.textContent = files[i].name + " (" + Math.ceil(files[i].size / 1024) + " KB)";
      list.appendChild(item);
    }
  }

  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (event) {
      event.preventDefault();
      zone.classList.add("over");
    });
  });
  ["dragleave", "drop"].forEach(function (name) {
    zone.addEventListener(name, function () { zone.classList.remove("over"); });
  });
  zone.addEventListener("drop", function (event) {
    event.preventDefault();
    if (!event.dataTransfer || !event.dataTransfer.files.length) return;
    input.files = event.dataTransfer.files;
    show(input.files);
  });
  input.addEventListener("change", function () { show(input.files); });
})();
