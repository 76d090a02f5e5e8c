"""Frame sources (cameras, streams, files, image-folder replay: ``sources``) and image decoding
(``images``, ``image_headers``). Nothing is imported here: a module that needs only the header
parsers or the accepted file names does not load OpenCV."""
